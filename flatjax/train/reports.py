"""Where a run's metric rows go besides ``metrics.jsonl``, as the Hugging Face Trainer's
``report_to``: TensorBoard event files and a CSV table; and the curve PNG of a run.

Every row the trainer logs (``{"step", "kind": "train" | "eval", ...}``) is always in
``metrics.jsonl``. With ``report_to``:

* ``tensorboard``: ``RUN/tensorboard/`` event files (tensorboardX), one scalar per
  numeric field, tagged ``KIND/FIELD`` (``train/loss``, ``eval/validation/accuracy``); a
  resumed run purges the events after its checkpoint, so the curves show each step once;
* ``csv``: ``RUN/metrics.csv``, every row of ``metrics.jsonl`` (one column per field, in
  order of first appearance), rewritten at every checkpoint.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path
from typing import Any, Iterable

from flatjax import figures, jsonl
from flatjax.errors import FlatjaxInputError

REPORTERS = ("tensorboard", "csv")


def check(report_to: Iterable[str]) -> None:
  """Each name is a reporter whose writer is installed (one-line errors)."""
  for name in report_to:
    if name not in REPORTERS:
      raise FlatjaxInputError(f"unknown report_to {name!r}; known: {', '.join(REPORTERS)} "
                              f"(metrics.jsonl is always written)")
    if name == "tensorboard" and importlib.util.find_spec("tensorboardX") is None:
      raise FlatjaxInputError("report_to tensorboard needs tensorboardX: "
                              "pip install 'flatjax[tensorboard]'")


class Reports:
  """The run's reporters; ``write(row)`` with every row, ``flush()`` at checkpoints,
  ``close()`` at the end. ``keep_until_step``: the step a resumed run restarts from."""

  def __init__(self, out: Path, jsonl_path: Path, report_to: Iterable[str],
               keep_until_step: int | None):
    check(report_to)
    self.jsonl_path, self.csv_path = jsonl_path, out / "metrics.csv"
    self.csv = "csv" in report_to
    self.board = None
    if "tensorboard" in report_to:
      from tensorboardX import SummaryWriter
      self.board = SummaryWriter(str(out / "tensorboard"),
                                 purge_step=None if keep_until_step is None
                                 else keep_until_step + 1)

  def write(self, row: dict[str, Any]) -> None:
    if self.board is None:
      return
    for key, value in row.items():
      if key not in ("step", "kind") and isinstance(value, (int, float)) and not isinstance(
          value, bool) and math.isfinite(value):
        self.board.add_scalar(f"{row.get('kind', 'run')}/{key}", value, row["step"])

  def flush(self) -> None:
    if self.board is not None:
      self.board.flush()
    if self.csv:
      write_csv(jsonl.read(self.jsonl_path), self.csv_path)

  def close(self) -> None:
    self.flush()
    if self.board is not None:
      self.board.close()


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
  """``rows`` as a CSV table, one column per field in order of first appearance (empty
  where a row lacks it)."""
  columns = list(dict.fromkeys(key for row in rows for key in row))
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
  return path


def plot_curves(rows: list[dict[str, Any]], main_metric: str, out: Path) -> Path:
  """The run's training loss (train rows) and ``main_metric`` (eval rows) against the
  step, one panel each, as a PNG."""
  plt = figures.pyplot()
  fig, (loss_ax, dev_ax) = plt.subplots(1, 2, figsize=(9.6, 3.6))
  train = [r for r in rows if r.get("kind") == "train" and r.get("loss") is not None]
  evals = [r for r in rows if r.get("kind") == "eval" and r.get(main_metric) is not None]
  loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train], "-", label="loss")
  if any(r.get("perturbed_loss") is not None for r in train):
    pairs = [(r["step"], r["perturbed_loss"]) for r in train
             if r.get("perturbed_loss") is not None]
    loss_ax.plot(*zip(*pairs), "--", label="perturbed loss (SAM)")
  loss_ax.set(xlabel="step", ylabel="training loss")
  loss_ax.legend(fontsize=8)
  dev_ax.plot([r["step"] for r in evals], [r[main_metric] for r in evals], "o-")
  best = [r for r in evals if r.get("best")]
  if best:
    dev_ax.plot(best[-1]["step"], best[-1][main_metric], "*", markersize=12, label="best")
    dev_ax.legend(fontsize=8)
  dev_ax.set(xlabel="step", ylabel=main_metric)
  for ax in (loss_ax, dev_ax):
    ax.grid(alpha=0.3)
  return figures.save(fig, out)
