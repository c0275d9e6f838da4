"""Iterative magnitude pruning (IMP) during fine-tuning, after Chen et al. (2020).

Round 0 fine-tunes the full model. After each round ``r`` the round's final
weights are pruned globally by magnitude (default scope :data:`BERT_SCOPE`) to
``(r + 1) * rate`` of the *original* prunable weights, so the sparsities are
exactly 10%, 20%, ... for the default rate, and round ``r + 1`` fine-tunes
under that mask, starting from

* ``mode="imp"``: the pre-trained weights (lottery-ticket rewinding; the new
  task head is re-initialised with the same seed, so it rewinds too), or
* ``mode="std"``: the pruned round-``r`` weights ("standard" pruning).

Every round is a complete ``flatjax train`` run (same optimizer, schedule,
data order and seed), so Adam, SAM or any registered optimizer is used in
every round. The run folder::

  imp.json                  the IMP and training settings
  rounds.jsonl              one row per finished round (see :func:`run_imp`)
  round_00/, round_01/ ...  each round's run folder (metrics, best/, final/, mask)
  masks/sparsity_10.safetensors (+ .json: the pruned model's scores before retraining
                            and the sparsity of each encoder layer)
  ticket.json               the winning-ticket report (:func:`ticket_report`)
  imp.png                   dev metric against sparsity

A run stopped anywhere (Ctrl-C, a lost machine, ``stop_after_steps``)
resumes where it stopped: finished rounds are kept, the current round
resumes from its last checkpoint (bitwise as in ``flatjax train``), and masks
are recomputed only if missing, from the saved weights.

References: Chen et al., *The Lottery Ticket Hypothesis for Pre-trained BERT
Networks*, NeurIPS 2020; Na et al., *Train Flat, Then Compress*, 2022, Sec. 3.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from pathlib import Path

from flatjax import files, jsonl, provenance
from flatjax.console import say
from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError
from flatjax.recipes import finetune, plots
from flatjax.sparsity import masks as masks_lib, methods
from flatjax.sparsity.pruner import prune_once
from flatjax.train.trainer import check_driver_folder

MODES = ("imp", "std")


@dataclasses.dataclass
class IMPConfig:
  """An IMP run. ``train`` is the per-round fine-tuning recipe; its
  ``output`` is the IMP run folder and its ``mask`` must be unset."""
  train: finetune.TrainConfig
  mode: str = "imp"
  """imp: rewind the kept weights to the pre-trained ones each round; std: keep training the
  pruned weights"""
  rate: float = 0.1
  """fraction of the original prunable weights removed per round"""
  rounds: int = 9
  """pruning rounds after the full model (9: up to 90 percent sparsity)"""
  granularity: str = "global"
  """rank scores over the whole scope (global), within each tensor (per_tensor), or keep N
  of every M inputs of each kernel (N:M, e.g. 2:4 with rate 0.25 or 0.5)"""
  scope: str = "bert"
  """prunable params: a scope name (bert: Chen et al.'s encoder kernels and the pooler) or a
  regex on param paths"""
  method: str = "magnitude"
  """the scores each round prunes by: magnitude, random, or a registered method needing no
  training"""
  tolerance: float = 1.0
  """a winning ticket's dev metric may be this many points below the full model's"""
  stop_after_steps: int | None = None
  """stop after N training steps over all rounds, as if interrupted"""

  def validate(self) -> None:
    self.train.validate()
    if self.train.pruning.mask is not None or self.train.pruning.method is not None:
      raise FlatjaxInputError("IMP makes its own masks; do not pass a mask")
    if self.mode not in MODES:
      raise FlatjaxInputError(f"IMP mode must be one of {', '.join(MODES)}, got {self.mode!r}")
    if not 0.0 < self.rate < 1.0:
      raise FlatjaxInputError(f"pruning rate must be in (0, 1), got {self.rate}")
    if self.rounds < 1 or self.rounds * self.rate > 1.0 + 1e-9:
      raise FlatjaxInputError(f"{self.rounds} rounds of {self.rate} exceed 100% sparsity"
                              if self.rounds >= 1 else "rounds must be positive")
    masks_lib.check_granularity(self.granularity,
                                [self.target(round_) for round_ in range(1, self.rounds + 1)])
    methods.untrained_scoring(self.method)
    if self.tolerance < 0:
      raise FlatjaxInputError(f"tolerance must be non-negative, got {self.tolerance}")
    if self.stop_after_steps is not None and self.stop_after_steps <= 0:
      raise FlatjaxInputError(f"stop-after-steps must be positive, got {self.stop_after_steps}")

  def target(self, round_: int) -> float:
    """Round ``round_``'s sparsity: ``round_ * rate``, rounded to 1e-6 so that
    10%, 20%, ... are exact."""
    return round(round_ * self.rate, 6)

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    d.pop("stop_after_steps")
    for k in ("progress", "stop_after_steps"):
      d["train"]["run"].pop(k, None)
    return d


def _pct(sparsity: float) -> str:
  return f"{round(sparsity * 100, 4):g}".replace(".", "_")


def mask_path(run: Path, sparsity: float) -> Path:
  return run / "masks" / f"sparsity_{_pct(sparsity)}.safetensors"


def round_dir(run: Path, round_: int) -> Path:
  return run / f"round_{round_:02d}"


def read_rounds(run: str | Path) -> list[dict]:
  """The rows of an IMP run's ``rounds.jsonl`` (finished rounds, in order)."""
  return jsonl.read(Path(run) / "rounds.jsonl")


def _round_config(config: IMPConfig, run: Path, round_: int, budget: int | None):
  model = config.train.model.name
  if round_ > 0 and config.mode == "std":
    model = str(round_dir(run, round_ - 1) / "final")
  mask = None if round_ == 0 else str(mask_path(run, config.target(round_)))
  return config.train.replace(run={"output": str(round_dir(run, round_)),
                                   "stop_after_steps": budget},
                              model={"name": model}, pruning={"mask": mask})


def _prune(config: IMPConfig, run: Path, round_: int, log) -> None:
  """Writes round ``round_``'s mask from round ``round_ - 1``'s final weights,
  and the pruned model's scores before retraining."""
  target = config.target(round_)
  path = mask_path(run, target)
  if path.exists():
    return
  previous_dir = round_dir(run, round_ - 1)
  trained = finetune.load_model(config.train.replace(model={"name": str(previous_dir / "final")}))
  previous = (None if round_ == 1 else
              masks_lib.load_mask(mask_path(run, config.target(round_ - 1)), trained.params))
  with warnings.catch_warnings():   # said below, in the run's log and round file
    warnings.simplefilter("ignore", masks_lib.FullyPrunedWarning)
    mask = prune_once(methods.untrained_scoring(config.method), trained.params, target,
                      scope=config.scope, granularity=config.granularity, previous=previous)
  scores = finetune.evaluate_params(config.train, trained,
                                    masks_lib.apply_mask(trained.params, mask))
  path.parent.mkdir(parents=True, exist_ok=True)
  report = masks_lib.sparsity_report(mask)
  emptied = masks_lib.fully_pruned(report)
  if emptied:   # see masks_lib.warn_fully_pruned
    log(f"warning: sparsity {target:.0%} prunes all of {', '.join(emptied)}")
  files.write_json(path.with_suffix(".json"), {
      "round": round_, "sparsity": report["overall"]["sparsity"],
      "pruned_from": str(previous_dir), "before_retraining": scores,
      "layer_sparsity": {g: e["sparsity"] for g, e in report["layers"].items()},
      "fully_pruned": emptied})
  # Written last: the mask file marks the round's pruning as done.
  masks_lib.save_mask(path, mask, metadata={
      "task": config.train.data.task, "optimizer": config.train.optimizer.name,
      "mode": config.mode, "round": str(round_), "seed": str(config.train.run.seed)})


def run_imp(config: IMPConfig, resume: bool = False, log=None) -> dict:
  """Runs (or resumes) IMP; returns the winning-ticket report.

  Each finished round appends a row to ``rounds.jsonl``: ``round``,
  ``target_sparsity``, ``sparsity`` (measured), ``metric`` (the best dev
  value of the task's main metric over the round's evaluations, the paper's
  protocol), ``best`` and ``final`` scores, ``before_retraining`` (the
  previous round's final weights under this round's mask, not retrained),
  ``steps`` and ``train_seconds``.
  """
  log = log or say
  config.validate()
  run = Path(config.train.run.output)
  resumed = check_driver_folder(run, "imp.json", config.to_json(), resume, "an IMP run")
  if not resumed:
    # A scope that selects nothing fails before anything is written.
    masks_lib.scope_mask(finetune.load_model(config.train).params, config.scope)
    run.mkdir(parents=True, exist_ok=True)
    files.write_json(run / "imp.json", config.to_json())
  provenance.write_run_json(run, config, config.train.data_sources(), resumed=resumed)
  rows_path = run / "rounds.jsonl"
  rows = jsonl.read(rows_path)
  done_steps = sum(r["steps"] for r in rows)
  for round_ in range(len(rows), config.rounds + 1):
    t0 = time.time()
    if round_ > 0:
      _prune(config, run, round_, log)
    budget = None
    if config.stop_after_steps is not None:
      budget = config.stop_after_steps - done_steps
      if budget <= 0:
        log(f"stopped before round {round_}; continue with --resume")
        return {"finished": False, "round": round_}
    round_config = _round_config(config, run, round_, budget)
    started = (Path(round_config.run.output) / "config.json").exists()
    log(f"IMP round {round_}/{config.rounds}: sparsity {config.target(round_):.0%}"
        + (" (resuming)" if started else ""))
    results = finetune.fit(round_config, resume=started)
    if not results["finished"]:
      return {"finished": False, "round": round_}
    before = None
    if round_ > 0:
      before = json.loads(mask_path(run, config.target(round_)).with_suffix(".json")
                          .read_text())["before_retraining"]
    main_key = next(k for k in results["best"] if k != "step")
    row = {"round": round_, "target_sparsity": config.target(round_),
           "sparsity": results.get("sparsity", 0.0), "metric": results["best"][main_key],
           "metric_name": main_key, "best": results["best"], "final": results["final"],
           "before_retraining": before, "steps": results["step"],
           "train_seconds": results["train_seconds"], "seconds": round(time.time() - t0, 1)}
    jsonl.append(rows_path, row)
    done_steps += results["step"]
    log(f"round {round_}: sparsity {row['sparsity']:.1%}, {main_key} {row['metric']:.2f}")
  rows = jsonl.read(rows_path)
  report = ticket_report(rows, config.train.data.task, config.tolerance)
  files.write_json(run / "ticket.json", report)
  plots.plot_sparsity_curves({f"{config.train.optimizer.name} ({config.mode})": rows},
                             run / "imp.png", title=f"{config.train.data.task}: IMP")
  return {"finished": True, **report}


def ticket_report(rows: list[dict], task: str, tolerance: float) -> dict:
  """Chen et al.'s winning ticket: the highest sparsity whose dev metric is at
  least the full model's minus ``tolerance``; also the metric at the paper's
  reference sparsity for ``task`` (None when the run did not reach it)."""
  full = next(r for r in rows if r["round"] == 0)
  winners = [r for r in rows if r["metric"] >= full["metric"] - tolerance]
  winner = max(winners, key=lambda r: r["target_sparsity"])
  ref = get_task(task).reference_sparsity
  at_ref = next((r for r in rows if ref is not None and math.isclose(r["target_sparsity"], ref)),
                None)

  def short(r):
    return None if r is None else {"round": r["round"], "sparsity": r["sparsity"],
                                   "metric": r["metric"]}
  return {"task": task, "metric": full["metric_name"], "full": full["metric"],
          "tolerance": tolerance, "winning_ticket": short(winner),
          "reference_sparsity": ref, "at_reference": short(at_ref),
          "rounds": [short(r) for r in rows]}


def summary_table(curves: dict[str, list[dict]]) -> str:
  """Markdown: one line per sparsity, per label the best dev metric after
  retraining and (in brackets) the pruned model's before retraining."""
  labels = list(curves)
  grid = sorted({r["target_sparsity"] for rows in curves.values() for r in rows})
  name = next(iter(curves.values()))[0]["metric_name"] if labels else "metric"
  lines = [f"Dev {name} after retraining (pruned, before retraining).", "",
           "| sparsity | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
  for s in grid:
    cells = []
    for label in labels:
      row = next((r for r in curves[label] if r["target_sparsity"] == s), None)
      if row is None:
        cells.append("")
        continue
      before = row.get("before_retraining")
      cells.append(f"{row['metric']:.2f}" + (f" ({before[name]:.2f})" if before else ""))
    lines.append(f"| {s:.0%} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
