"""The one training loop every driver runs (:class:`Trainer`), and the pieces
of a run folder: checkpoints of the whole state, the metrics log, the
output-folder checks.

Fine-tuning (IMP's rounds and movement pruning are fine-tuning runs) and CoFi's
phases plug their steps, evaluation and best-model saving into the trainer as
:class:`Hooks`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from flatjax import files, jsonl
from flatjax.console import progress_bar, say, shown
from flatjax.data import pipeline
from flatjax.errors import FlatjaxInputError, TrainingDiverged
from flatjax.train import reports, state as state_lib


def device_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The arrays a train step takes (no example indices or other host-side keys)."""
  return {k: v for k, v in batch.items() if k in pipeline.LOSS_KEYS}


class Checkpointer:
  """orbax CheckpointManager for a train state (any pytree) plus a JSON of the
  :class:`Trainer`'s bookkeeping (its ``meta``)."""

  def __init__(self, directory: Path):
    import orbax.checkpoint as ocp
    self._ocp = ocp
    self.manager = ocp.CheckpointManager(
        directory.absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))

  def save(self, step: int, state: state_lib.TrainState, meta: dict) -> None:
    ocp = self._ocp
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore_latest(self, like: state_lib.TrainState
                     ) -> tuple[state_lib.TrainState, dict] | None:
    """The newest checkpoint that reads back whole (None without any): one that
    does not (a kill or a full disk during its write) is said, deleted and
    passed over for the one before."""
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        return self.restore(step, like)
      except Exception as e:  # noqa: BLE001 -- orbax and tensorstore raise many kinds
        say(f"checkpoint {step} is unreadable ({type(e).__name__}); "
            "resuming from the one before it")
        self.manager.delete(step)
    return None

  def restore(self, step: int, like: state_lib.TrainState) -> tuple[state_lib.TrainState, dict]:
    ocp = self._ocp
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def close(self) -> None:
    self.manager.close()


def flat_settings(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(flat_settings(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_writable(out: Path) -> None:
  """``out`` is (or can be made) a folder this process may write in: not a file,
  not under a file, not read-only. Checked before any model or data loads."""
  if out.exists() and not out.is_dir():
    raise FlatjaxInputError(f"output {out} exists and is not a folder")
  existing = next(p for p in (out, *out.absolute().parents) if p.exists())
  if not existing.is_dir():
    raise FlatjaxInputError(f"output {out} is under {existing}, which is a file, not a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise FlatjaxInputError(f"output {out}: {existing} is not writable")


# The file each command's run folder holds at its top (a fine-tuning run's config.json).
RUN_MARKERS = ("config.json", "imp.json", "compare.json", "tickets.json", "cofi.json",
               "oneshot.jsonl", "quantize.json", "sharpness.json")


def check_rerun_folder(out: Path, marker: str, what: str) -> None:
  """An output folder a command writes anew on every run (quantize, sharpness) is
  new, or its own (``marker``), or was left by a run of it that was cut short:
  never another command's run folder."""
  check_writable(out)
  others = [m for m in RUN_MARKERS if m != marker and (out / m).exists()]
  if others:
    raise FlatjaxInputError(f"output folder {out} holds another run ({others[0]}), not "
                            f"{what}; use another --output")


def check_driver_folder(out: Path, marker: str, settings: dict, resume: bool,
                        what: str) -> bool:
  """Checks a multi-run driver's output folder (IMP, ticket grids) before
  anything is written; returns True when it already holds this run.

  ``marker`` is the settings file the driver writes there, ``settings`` the
  JSON it would write, ``what`` names the run in errors ("an IMP run"). A
  folder holding the run needs ``resume`` and the same settings (the changed
  ones are named); any other non-empty folder is refused.
  """
  saved = out / marker
  check_writable(out)
  if saved.exists():
    if not resume:
      raise FlatjaxInputError(f"output folder {out} already holds {what}; pass --resume to "
                              "continue it or pick another --output")
    try:
      previous = flat_settings(json.loads(saved.read_text()))
    except json.JSONDecodeError:
      raise FlatjaxInputError(f"{saved} is not valid JSON; use another --output") from None
    current = flat_settings(json.loads(json.dumps(settings)))
    changed = sorted(k for k in {**previous, **current} if previous.get(k) != current.get(k))
    if changed:
      raise FlatjaxInputError(f"output folder {out} holds {what} with different settings "
                              f"({', '.join(changed)}); use another --output")
    return True
  if resume:
    raise FlatjaxInputError(f"nothing to resume: {out} holds no {what.split(' ', 1)[1]}")
  if out.exists() and any(out.iterdir()):
    raise FlatjaxInputError(f"output folder {out} is not empty and holds no "
                            f"{what.split(' ', 1)[1]}")
  return False


class MetricsLog:
  """``metrics.jsonl``: one JSON row per write, and the ``report_to`` reporters
  (:mod:`flatjax.train.reports`). Resuming from a checkpoint at ``keep_until_step``
  drops the rows logged after it (they are redone)."""

  def __init__(self, path: Path, keep_until_step: int | None, report_to: tuple[str, ...] = ()):
    self.path = path
    self.enabled = jax.process_index() == 0  # on several hosts, the first one logs
    self.reports = None
    if not self.enabled:
      return
    rows = []
    if keep_until_step is not None:
      # Rows logged after the checkpoint we resume from are redone: drop them (and a
      # row a kill cut short).
      rows = [r for r in jsonl.read(path) if r.get("step", 0) <= keep_until_step]
    jsonl.rewrite(path, rows)
    if report_to:
      self.reports = reports.Reports(path.parent, path, report_to, keep_until_step)

  def write(self, row: dict) -> None:
    if not self.enabled:
      return
    jsonl.append(self.path, row)
    if self.reports is not None:
      self.reports.write(row)

  def flush(self) -> None:
    if self.reports is not None:
      self.reports.flush()

  def close(self) -> None:
    if self.reports is not None:
      self.reports.close()
      self.reports = None


def last_eval(path: Path) -> dict:
  if not path.exists():  # a host other than the first, on its own disk: it logs nothing
    return {}
  rows = jsonl.read(path)
  evals = [r for r in rows if r.get("kind") == "eval"]
  return evals[-1] if evals else {}


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When a run logs, evaluates, checkpoints and stops, in optimizer steps.

  ``boundaries``: steps that are always logged and evaluated besides the
  regular ones (the ends of a driver's phases, e.g. CoFi's pruning)."""
  total_steps: int
  steps_per_epoch: int
  eval_every: int | None = None          # None: at the end of every epoch
  save_every: int | None = None          # checkpoints are also saved at every evaluation
  log_every: int = 20
  stop_after_steps: int | None = None    # stop early (checkpointed), as if interrupted
  boundaries: frozenset[int] = frozenset()

  @property
  def stop_at(self) -> int:
    return self.total_steps if self.stop_after_steps is None else min(
        self.total_steps, self.stop_after_steps)

  def evaluates(self, step: int) -> bool:
    every = self.eval_every or self.steps_per_epoch
    return step % every == 0 or step == self.total_steps or step in self.boundaries

  def logs(self, step: int) -> bool:
    return step % self.log_every == 0 or step == self.stop_at or step in self.boundaries

  def saves(self, step: int) -> bool:
    return self.evaluates(step) or bool(self.save_every and step % self.save_every == 0)

  def epoch(self, step: int) -> float:
    return round(step / self.steps_per_epoch, 4)


def _no_fields(step: int) -> dict:
  del step
  return {}


def _no_note(row: dict) -> str:
  del row
  return ""


@dataclasses.dataclass
class Hooks:
  """What a driver plugs into the :class:`Trainer`.

  ``train_step(state, batch, step) -> (state, metrics)`` takes the host batch
  and the index of the step it takes; ``evaluate(state, step)`` returns an
  evaluation row's scores (``{"split/metric": value, ...}``); ``save_best(state,
  step)`` keeps the best model (None: nothing kept); evaluations before
  ``best_from`` never count as best (a learned mask before its final
  sparsity). ``fields(step)`` adds a driver's fields (CoFi's phase) to the rows
  of the step just taken, ``before_step(state, step, meta)`` may change the
  state before a step (a fresh optimizer for a new phase), ``note(row)`` adds
  to an evaluation's message.
  """
  train_step: Callable[[Any, dict, int], tuple[Any, dict]]
  evaluate: Callable[[Any, int], dict]
  save_best: Callable[[Any, int], None] | None = None
  best_from: int = 0
  fields: Callable[[int], dict] = _no_fields
  before_step: Callable[[Any, int, dict], Any] | None = None
  note: Callable[[dict], str] = _no_note


# Metrics whose first non-finite value stops a run (TrainingDiverged).
GUARDED = ("loss", "grad_norm")


class _Window:
  """The train metrics and examples since the last train row."""

  def __init__(self, first_step: int):
    self.pending, self.examples, self.since = [], 0, time.time()
    self.first_step = first_step   # the step whose metrics are pending[0]

  def add(self, metrics: dict, batch: dict) -> None:
    self.pending.append(metrics)
    self.examples += int(batch["example_weight"].sum())

  def first_nonfinite(self) -> tuple[int, str, float] | None:
    """``(step, metric, value)`` of the first pending non-finite guarded metric.
    The pending metrics stay on the host afterwards (flush does not fetch them again)."""
    self.pending = jax.device_get(self.pending)
    for i, m in enumerate(self.pending):
      for name in GUARDED:
        if name in m and not np.isfinite(m[name]):
          return self.first_step + i + 1, name, float(m[name])
    return None

  def flush(self) -> tuple[dict, float]:
    """The window's mean metrics (those every step reported) and examples/s."""
    fetched = jax.device_get(self.pending)
    keys = [k for k in fetched[0] if all(k in m for m in fetched)]
    now = time.time()
    rate = self.examples / max(now - self.since, 1e-9)
    self.first_step += len(self.pending)
    self.pending, self.examples, self.since = [], 0, now
    return {k: float(np.mean([m[k] for m in fetched])) for k in keys}, rate


class Trainer:
  """The one training loop: steps over epochs (resuming mid-epoch), train rows
  every ``log_every`` steps, evaluations with best-model tracking, orbax
  checkpoints, a progress bar, and a checkpoint on Ctrl-C or at
  ``stop_after_steps``. Fine-tuning (and IMP's rounds, movement pruning) and
  CoFi's phases differ only in their :class:`Hooks`.

  ``meta`` (JSON) is saved with every checkpoint: the best metric and step,
  the number of evaluations, the training seconds, and any driver fields given
  at construction (restored with the state).

  With ``patience``, the run stops early after that many evaluations in a row that
  could have been the best (from ``hooks.best_from`` on) and were not; ``meta``
  records the step as ``stopped_early`` and a resumed run stays stopped.
  """

  def __init__(self, out: Path, schedule: Schedule, main_metric: str, *,
               progress: bool = True, meta: dict | None = None, patience: int | None = None,
               report_to: tuple[str, ...] = ()):
    self.out, self.schedule, self.main_metric, self.progress = out, schedule, main_metric, progress
    self.patience, self.report_to = patience, tuple(report_to)
    self.ckpt = Checkpointer(out / "checkpoints")
    self.meta = {"best_metric": None, "best_step": None, "evals": 0, "train_seconds": 0.0,
                 "evals_without_best": 0, "stopped_early": None, **(meta or {})}
    self.log: MetricsLog | None = None

  def restore(self, state: Any, resume: bool) -> Any:
    """The state to start from: the latest checkpoint's when resuming (its
    meta with it), else ``state``. Opens the metrics log (rows after the
    checkpoint are dropped: they are redone)."""
    restored = self.ckpt.restore_latest(state) if resume else None
    if restored is not None:
      state, self.meta = restored
    self.log = MetricsLog(self.out / "metrics.jsonl", int(state.step) if resume else None,
                          self.report_to)
    return state

  def run(self, state: Any, batcher: Any, hooks: Hooks) -> tuple[Any, int]:
    """Trains from ``state.step`` to the schedule's stop; returns ``(state, step)``."""
    plan, meta = self.schedule, self.meta
    step = start = int(state.step)
    t0, seconds_before, window = time.time(), meta.get("train_seconds", 0.0), _Window(start)
    bar = progress_bar(self.progress, plan.total_steps, start)

    def save(at: int) -> None:
      meta["train_seconds"] = round(seconds_before + time.time() - t0, 1)
      self.ckpt.save(at, state, meta)
      self.log.flush()

    try:
      while step < plan.stop_at and meta.get("stopped_early") is None:
        epoch, offset = divmod(step, plan.steps_per_epoch)
        for batch in batcher.epoch(epoch, start=offset):
          if hooks.before_step is not None:
            state = hooks.before_step(state, step, meta)
          state, metrics = hooks.train_step(state, batch, step)
          step += 1
          window.add(metrics, batch)
          if plan.logs(step) or plan.saves(step):  # before anything is written from it
            self._check_finite(window, hooks, bar)
          if plan.logs(step):
            self._log_train(step, window, hooks, bar)
          if bar is not None:
            bar.update(1)
          if plan.evaluates(step):
            self.evaluate(state, step, hooks)
            if self.patience and meta.get("evals_without_best", 0) >= self.patience:
              meta["stopped_early"] = step
          if plan.saves(step):
            save(step)
          if step >= plan.stop_at or meta.get("stopped_early") is not None:
            break
    except KeyboardInterrupt:
      save(step)
      self.ckpt.close()
      say(f"interrupted at step {step}; checkpoint saved, continue with --resume")
      raise
    except TrainingDiverged as err:
      self.ckpt.close()
      self._write_diverged(err)
      raise
    finally:
      if bar is not None:
        bar.close()
    save(step)
    self.ckpt.close()
    self.log.close()
    if meta.get("stopped_early") is not None:
      say(f"stopped early at step {step} of {plan.total_steps}: {self.main_metric} not above "
          f"its best (step {meta['best_step']}) in {self.patience} evaluations")
    elif step < plan.total_steps:
      say(f"stopped at step {step} of {plan.total_steps}; continue with --resume")
    return state, step

  def _check_finite(self, window: _Window, hooks: Hooks, bar) -> None:
    """Stops the run at the first non-finite loss or gradient norm: the window's
    train row is logged (non-finite values as null), nothing is saved."""
    bad = window.first_nonfinite()
    if bad is None:
      return
    self._log_train(window.first_step + len(window.pending), window, hooks, bar)
    raise TrainingDiverged(*bad, last_good=self.ckpt.latest_step())

  def _write_diverged(self, err: TrainingDiverged) -> None:
    """``results.json`` of a run stopped by a non-finite loss: how it ended, the
    last good checkpoint, and the best evaluation before it."""
    if jax.process_index() != 0:
      return
    results = {"finished": False, "stopped": "diverged",
               "diverged": {"step": err.step, "metric": err.name, "value": str(err.value)},
               "last_good_checkpoint": err.last_good, "total_steps": self.schedule.total_steps,
               "best": {"step": self.meta["best_step"],
                        self.main_metric: self.meta["best_metric"]}}
    files.write_json(self.out / "results.json", results)

  def _log_train(self, step: int, window: _Window, hooks: Hooks, bar) -> None:
    means, rate = window.flush()
    self.log.write({"step": step, "epoch": self.schedule.epoch(step), "kind": "train",
                    **hooks.fields(step - 1), **means, "examples_per_s": rate})
    if bar is not None:
      bar.set_postfix(loss=f"{means['loss']:.4f}", ex_s=f"{rate:.0f}")

  def evaluate(self, state: Any, step: int, hooks: Hooks) -> dict:
    """Scores ``state``, keeps it if it is the best so far, logs the row.

    The best is the highest main metric from ``hooks.best_from`` on; a run
    whose every evaluation came before that keeps its last one."""
    meta = self.meta
    row = {"step": step, "epoch": self.schedule.epoch(step), "kind": "eval",
           **hooks.fields(step - 1), **hooks.evaluate(state, step)}
    value, best = row[self.main_metric], meta["best_metric"]
    last_chance = step == self.schedule.total_steps and best is None
    improved = last_chance or (step >= hooks.best_from and (best is None or value > best))
    if improved:
      meta.update(best_metric=value, best_step=step, evals_without_best=0)
      if hooks.save_best is not None:
        hooks.save_best(state, step)
    elif step >= hooks.best_from:
      meta["evals_without_best"] = meta.get("evals_without_best", 0) + 1
    meta["evals"] = meta.get("evals", 0) + 1
    row["best"] = improved
    self.log.write(row)
    phase = f", {row['phase']}" if "phase" in row else ""
    say(f"step {step} (epoch {row['epoch']:.2f}{phase}): {shown(row)}{hooks.note(row)}"
        + (" (best)" if improved else ""))
    return row
