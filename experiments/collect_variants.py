"""Rows of a ``variants`` run folder (:mod:`experiments.collect` describes a row).

Per SAM variant ``LABEL`` (``OPTIMIZER`` or ``OPTIMIZER-SETTING``: ``looksam-alpha0.1`` is
LookSAM with ``--opt-arg alpha=0.1``), ``flatjax train`` wrote ``LABEL/`` and ``flatjax
quantize`` ``LABEL/int8/``; ``flatjax oneshot`` wrote the curves of every variant beside the
compare item's Adam and SAM models of the same task and seed into ``oneshot/``. The rows are
the swa item's (:mod:`experiments.collect_swa`): per model dense, one-shot at the curve's end,
the curve's other points and int8; a variant's ``setting`` is its label's part after the
optimizer. The variants' step costs (benchmarks/sam_overhead.py) are not rows: they are no
dev scores of these runs.
"""

from __future__ import annotations

from pathlib import Path

from experiments.collect_int8 import revisions, train_ids
from experiments.collect_swa import COMPARED, compared_rows, model_rows, read_curves


def rows(config: dict, folder: Path) -> list[dict]:
  curves = read_curves(folder / "oneshot" / "oneshot.jsonl")
  out = compared_rows(config, folder, curves)
  for label, points in curves.items():
    if label in COMPARED:
      continue
    model = folder / label
    ids = {**train_ids(model), "setting": setting(label),
           "revision": revisions(model, model / "int8", folder / "oneshot")}
    out += model_rows(config["scale"], ids, points, model / "int8" / "quantize.json")
  return out


def setting(label: str) -> str | None:
  """``"alpha0.1"`` for ``"looksam-alpha0.1"``; None for a variant at its defaults."""
  return label.partition("-")[2] or None
