"""The fine-tuning driver (``flatjax train``): data -> jitted steps -> the
:class:`~flatjax.train.trainer.Trainer` -> a run folder.

Its side effects (files, progress bar, logging) are at this edge; the steps it
calls are pure. IMP's rounds, tickets and movement pruning are fine-tuning runs
of this driver. A run folder holds::

  run.json           what made the run: settings, command, revision, versions, data
  config.json        the TrainConfig, the model and data it read
  metrics.jsonl      one JSON object per log interval and per evaluation
  mask.safetensors   the pruning mask (pruned runs: the given one, or the learned
                     one at the end); best/ and final/ hold their own
  checkpoints/       orbax checkpoints of the whole TrainState (for --resume)
  best/              Hugging Face folder of the best params on validation
  final/             Hugging Face folder of the last params
  results.json       the summary: best and final metrics, steps, time

A run interrupted at any point (Ctrl-C, a preempted machine, or
``stop_after_steps``) and restarted with ``resume=True`` continues from its
last checkpoint and, on the same machine and seed, ends with bitwise the same
parameters as an uninterrupted run: the data order depends only on (seed,
epoch), the dropout key only on (seed, step).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import jax

from flatjax import files, jsonl, parallel, provenance
from flatjax.console import say, shown
from flatjax.data import pipeline
from flatjax.data.tasks import TaskSpec, get_task
from flatjax.errors import FlatjaxInputError
from flatjax.models import pretrained
from flatjax.models.bert import DTYPES
from flatjax.optim import registry
from flatjax.optim.msam import unperturbed
from flatjax.optim.swa import averaged_params
from flatjax.data.config import DataConfig
from flatjax.models.config import ModelConfig
from flatjax.sparsity import masks as masks_lib
from flatjax.sparsity.config import PruningConfig
from flatjax.train import losses, reports, state as state_lib, steps
from flatjax.train.config import RunConfig
from flatjax.train.evaluation import PREDICTIONS_FILE, scores_and_predictions, split_scores
from flatjax.train.trainer import (Hooks, Schedule, Trainer, check_writable, device_batch,
                                   flat_settings, last_eval)


@dataclasses.dataclass
class TrainConfig:
  """Everything that defines a fine-tuning run, in five sections (the CLI's
  flags are their fields: ``--optimizer.learning_rate``, short ``--lr``).

  Defaults are the paper's GLUE recipe (Na et al. 2022): batch 32, max length
  128, Adam at 2e-5 decaying linearly to 0, no warmup; evaluation each epoch,
  keeping the best checkpoint on the validation metric.
  """
  data: DataConfig
  run: RunConfig
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  optimizer: registry.OptimizerConfig = dataclasses.field(
      default_factory=registry.OptimizerConfig)
  pruning: PruningConfig = dataclasses.field(default_factory=PruningConfig)

  @classmethod
  def from_dict(cls, values: dict[str, dict]) -> TrainConfig:
    """A TrainConfig from nested dicts (a config file, the CLI's parsed settings):
    ``{"data": {"task": "rte"}, "run": {"output": "runs/rte"}}``; sections left
    out take their defaults, keys outside the five sections are ignored."""
    kinds = {"data": DataConfig, "model": ModelConfig, "optimizer": registry.OptimizerConfig,
             "pruning": PruningConfig, "run": RunConfig}
    return cls(**{name: kind(**values[name]) for name, kind in kinds.items() if name in values})

  def validate(self) -> None:
    for section in (self.data, self.model, self.optimizer, self.pruning, self.run):
      section.validate()

  def replace(self, **changes: Any) -> TrainConfig:
    """A copy with fields of its sections changed: ``replace(run={"output": ...})``."""
    return dataclasses.replace(self, **{
        name: dataclasses.replace(getattr(self, name), **fields)
        for name, fields in changes.items()})

  def data_sources(self) -> dict[str, str | None]:
    """The files (or hub names) the run reads, for its ``run.json``."""
    return {"data": self.data.source, "eval_data": self.data.eval_source,
            "model": self.model.name, "mask": self.pruning.mask}


# What a new run writes before config.json, which marks its folder as holding a run.
_FIRST_FILES = {masks_lib.MASK_FILE, provenance.RUN_FILE, "run.json.tmp", "config.json.tmp",
                masks_lib.MASK_FILE + ".tmp"}

# Fields that may differ between an interrupted run and its resumption.
_RESUMABLE_CHANGES = {"run.output", "run.progress", "run.stop_after_steps", "run.log_every",
                      "run.eval_batch_size",
                      "run.mesh"}  # checkpoints restore onto any mesh


@dataclasses.dataclass
class RunData:
  task: TaskSpec
  tokenizer: Any
  train: pipeline.SplitData
  evals: list[pipeline.SplitData]


def load_model(config: TrainConfig) -> pretrained.Pretrained:
  """The model to fine-tune, with the task's head (new heads initialised from the seed)."""
  return pretrained.from_pretrained(config.model.name, get_task(config.data.task),
                                    seed=config.run.seed, dtype=DTYPES[config.model.dtype])


def initial_params(config: TrainConfig) -> tuple[pretrained.Pretrained, Any, Any]:
  """``(model, mask, params)`` a run starts from: ``config.model.name``'s weights
  with ``config.pruning.mask``'s pruned weights set to exactly 0 (mask None: dense).

  With zero gradient (the forward pass masks them) and a fresh optimizer state,
  pruned weights then stay 0 under every registered optimizer.
  """
  model = load_model(config)
  path = config.pruning.mask
  mask = None if path is None else masks_lib.load_mask(path, model.params)
  return model, mask, masks_lib.apply_mask(model.params, mask)


def _common(config: TrainConfig) -> dict:
  return dict(max_length=config.data.max_length, pad_to=config.data.pad_to,
              seed=config.run.seed, doc_stride=config.data.doc_stride)


def load_eval_splits(config: TrainConfig, tokenizer: Any) -> list[pipeline.SplitData]:
  """Every evaluation split of the run's task (``eval_source``, else ``source``)."""
  task = get_task(config.data.task)
  return pipeline.load_eval_splits(task, tokenizer, config.data.eval_data(),
                                   batch_size=config.run.eval_batch_size,
                                   max_examples=config.data.max_eval_examples, **_common(config))


def load_data(config: TrainConfig, model: pretrained.Pretrained) -> RunData:
  """The run's train split and every evaluation split of its task."""
  task = get_task(config.data.task)
  tokenizer = pretrained.load_tokenizer(model.tokenizer_dir)
  train = pipeline.load_split(task, tokenizer, config.data.source, task.train_split,
                              batch_size=config.run.batch_size, shuffle=True,
                              max_examples=config.data.max_train_examples, **_common(config))
  return RunData(task, tokenizer, train, load_eval_splits(config, tokenizer))


def evaluate_params(config: TrainConfig, model: pretrained.Pretrained, params: Any,
                    splits: list[pipeline.SplitData] | None = None,
                    eval_step=None) -> dict[str, float]:
  """``{"split/metric": value}`` of ``params`` (``model``'s architecture) on the
  run's evaluation splits (loaded from ``config`` unless given). Pass the same
  ``eval_step`` (``jax.jit(steps.make_eval_step(model.module))``) to repeated
  calls so that it compiles once."""
  return predict_params(config, model, params, splits, eval_step)[0]


def predict_params(config: TrainConfig, model: pretrained.Pretrained, params: Any,
                   splits: list[pipeline.SplitData] | None = None,
                   eval_step=None) -> tuple[dict[str, float], dict]:
  """:func:`evaluate_params`, and the dev predictions per split
  (``SplitData.per_example``: digit strings of labels and predicted classes)."""
  if splits is None:
    splits = load_eval_splits(config, pretrained.load_tokenizer(model.tokenizer_dir))
  if eval_step is None:
    eval_step = jax.jit(steps.make_eval_step(model.module))
  return scores_and_predictions(eval_step, params, None, splits)


def _prepare_output(config: TrainConfig, resume: bool) -> tuple[Path, bool]:
  """Checks the output folder before anything is written; returns (path, resuming)."""
  out = Path(config.run.output)
  has_run = _holds_this_run(config, out)
  if has_run and not resume:
    raise FlatjaxInputError(f"output folder {out} already holds a run; pass --resume to "
                            "continue it or pick another --output")
  if resume and not has_run:
    raise FlatjaxInputError(f"nothing to resume: {out} holds no flatjax run")
  if has_run:
    changed = provenance.changed_inputs(
        out, {k: v for k, v in config.data_sources().items() if k != "model"})
    if changed:
      raise FlatjaxInputError(f"{out}: the files under {', '.join(changed)} changed since "
                              "the run began; resume with the data it began with, or start "
                              "a new run")
    for folder in ("best", "final", "swa"):  # a kill while one was being replaced
      files.recover_folder(out / folder)
  return out, has_run


def _holds_this_run(config: TrainConfig, out: Path) -> bool:
  """Whether ``out`` holds a run of ``config`` (False: it is new, or empty, or holds only
  what a run killed before its config.json left); any other folder is refused."""
  saved = out / "config.json"
  check_writable(out)
  if not saved.exists():
    # A run killed before its config.json leaves at most the files written before it.
    others = {p.name for p in out.iterdir()} - _FIRST_FILES if out.exists() else set()
    if others:
      raise FlatjaxInputError(f"output folder {out} is not empty and holds no flatjax run")
    return False
  try:
    previous = flat_settings(json.loads(saved.read_text())["config"])
  except (json.JSONDecodeError, KeyError, TypeError):
    raise FlatjaxInputError(f"output folder {out} holds a config.json that is not a flatjax "
                            "run's; use another --output") from None
  current = flat_settings(dataclasses.asdict(config))
  changed = sorted(k for k in current.keys() | previous.keys()
                   if k not in _RESUMABLE_CHANGES and previous.get(k) != current.get(k))
  if changed:
    raise FlatjaxInputError(
        f"output folder {out} holds a run with different settings ({', '.join(changed)}); "
        "use another --output")
  return True


@dataclasses.dataclass
class _Compiled:
  """A run's jitted steps, on a mesh or on one device."""
  state: state_lib.TrainState
  train_step: Any          # (state, host batch) -> (state, metrics)
  eval_step: Any           # (params, mask, host batch) -> outputs
  mesh: Any = None


def _compile(config: TrainConfig, model: pretrained.Pretrained, state, step_fn) -> _Compiled:
  """The train and eval steps, jitted for one device or sharded over ``config.run.mesh``."""
  mesh = parallel.mesh_for_run(config.run.mesh)
  if mesh is None:
    jitted = steps.jit_train_step(step_fn)
    return _Compiled(state, lambda s, b: jitted(s, device_batch(b)),
                     jax.jit(steps.make_eval_step(model.module)))
  parallel.check_batch_size(config.run.batch_size, mesh)
  parallel.check_batch_size(config.run.eval_batch_size, mesh)
  state, shardings = parallel.shard_state(state, state.params, mesh)
  train_step = parallel.host_fed(parallel.jit_train_step(step_fn, shardings, mesh),
                                 config.run.batch_size, mesh)
  # The logits come back whole on every process.
  eval_step = parallel.host_fed(parallel.jit_eval_step(
      steps.make_eval_step(model.module), shardings.params, shardings.mask, mesh),
      config.run.eval_batch_size, mesh)
  return _Compiled(state, lambda s, b: train_step(s, device_batch(b)), eval_step, mesh)


def _write_run_files(out: Path, config: TrainConfig, model: pretrained.Pretrained, mask,
                     data: RunData, has_run: bool) -> None:
  """The given mask, ``run.json`` and, last, ``config.json`` (which marks the folder
  as holding a run) for a new run; ``run.json``'s resumed list every time. Written
  before anything else, so that a run killed at any point can be resumed."""
  if jax.process_index() != 0:  # on several hosts, the first one writes the files
    return
  if not has_run and mask is not None:
    masks_lib.save_mask(out / masks_lib.MASK_FILE, mask)
  provenance.write_run_json(out, config, {**config.data_sources(), "model": model.source_dir},
                            resumed=has_run)
  if not has_run:
    files.write_json(out / "config.json", {
        "config": dataclasses.asdict(config), "model_source": str(model.source_dir),
        "initialized": model.initialized, "unexpected": model.unexpected,
        "train_examples": data.train.num_examples, "train_source": data.train.source,
        "eval_sources": {s.split: s.source for s in data.evals}})


def _announce(config: TrainConfig, model, data: RunData, plan: Schedule, start: int,
              mesh) -> None:
  if start == 0:
    if model.initialized:
      say(f"newly initialised (not in the checkpoint): {', '.join(model.initialized)}")
    if model.unexpected:
      say(f"checkpoint tensors not used: {', '.join(model.unexpected)}")
  if start < plan.stop_at:
    windows = (f" ({data.train.num_rows} windows)"
               if data.train.num_rows != data.train.num_examples else "")
    say(f"{data.task.name}: {data.train.num_examples} training examples{windows}, "
        f"{plan.steps_per_epoch} steps/epoch, {plan.total_steps} steps, optimizer "
        f"{config.optimizer.name}"
        + (f", mesh {parallel.describe(mesh)}" if mesh is not None else "")
        + (f", resuming at step {start}" if start else ""))


def _hooks(config: TrainConfig, out: Path, model, data: RunData, compiled: _Compiled,
           best_from: int) -> Hooks:
  latest = {}   # the last evaluation's dev predictions, saved with the best model

  def evaluate(state, step):
    row, latest["predictions"] = scores_and_predictions(
        compiled.eval_step, unperturbed(state.params, state.opt_state), state.mask, data.evals)
    if state.mask is not None:
      row["sparsity"] = masks_lib.sparsity(parallel.gather_to_host(state.mask))
    return row

  def save_best(state, step):
    _save_model(out / "best", state, model, data.task, latest.get("predictions"))

  return Hooks(train_step=lambda state, batch, step: compiled.train_step(state, batch),
               evaluate=evaluate, save_best=save_best if config.run.keep_best else None,
               best_from=best_from)


def fit(config: TrainConfig, resume: bool = False) -> dict:
  """Fine-tunes ``config.model.name`` on ``config.data.task``; returns the results summary.

  Every input is checked (task, files, rows, labels, model folder, sizes)
  before the output folder is touched, so bad input leaves nothing behind.
  """
  config.validate()
  out, has_run = _prepare_output(config, resume)

  task = get_task(config.data.task)
  model, mask, params = initial_params(config)
  data = load_data(config, model)
  steps_per_epoch = data.train.batcher.num_batches
  total_steps = max(1, math.ceil(config.run.epochs * steps_per_epoch))
  tx = registry.make_optimizer(config.optimizer, total_steps, steps_per_epoch)
  schedule = registry.lr_schedule(config.optimizer, total_steps)
  pruner = config.pruning.pruner(total_steps)
  state = state_lib.create(params, tx, config.run.seed, mask=mask, prng_impl=config.run.prng_impl,
                           pruner=pruner)
  compiled = _compile(config, model, state, steps.make_train_step(
      losses.make_loss_fn(model.module, task), tx, schedule, pruner,
      micro_batches=config.run.grad_accum))

  out.mkdir(parents=True, exist_ok=True)
  _write_run_files(out, config, model, mask, data, has_run)
  plan = Schedule(total_steps, steps_per_epoch, eval_every=config.run.eval_every,
                  save_every=config.run.save_every, log_every=config.run.log_every,
                  stop_after_steps=config.run.stop_after_steps)
  trainer = Trainer(out, plan, f"{data.evals[0].split}/{task.main_metric}",
                    progress=config.run.progress, patience=config.run.patience,
                    report_to=tuple(config.run.report_to))
  state = trainer.restore(compiled.state, resume)
  _announce(config, model, data, plan, int(state.step), compiled.mesh)
  # With a learned mask, only models at the final sparsity compete for "best".
  hooks = _hooks(config, out, model, data, compiled, config.pruning.end_step(total_steps))
  state, step = trainer.run(state, data.train.batcher, hooks)
  if step < total_steps and trainer.meta.get("stopped_early") is None:
    return {"step": step, "total_steps": total_steps, "finished": False}
  return _finish(config, out, model, data, compiled, trainer, state, step)


def _finish(config: TrainConfig, out: Path, model, data: RunData, compiled: _Compiled,
            trainer: Trainer, state, step: int) -> dict:
  """The final model (and learned mask, and SWA average) and ``results.json``."""
  task, meta, is_main = data.task, trainer.meta, jax.process_index() == 0
  _save_model(out / "final", state, model, task)
  host_mask = parallel.gather_to_host(state.mask)
  if config.pruning.method is not None and is_main:
    masks_lib.save_mask(out / masks_lib.MASK_FILE, host_mask,
                        metadata={"task": task.name, "optimizer": config.optimizer.name,
                                  "pruning": config.pruning.method})
  final_row = last_eval(out / "metrics.jsonl")
  results = {"task": task.name, "optimizer": config.optimizer.name, "finished": True,
             "step": step, "total_steps": trainer.schedule.total_steps,
             "stopped_early": meta.get("stopped_early"), "main_metric": task.main_metric,
             "best": {"step": meta["best_step"], trainer.main_metric: meta["best_metric"]},
             "final": {k: v for k, v in final_row.items() if "/" in k},
             "train_examples": data.train.num_examples,
             "train_seconds": meta["train_seconds"]}
  swa = averaged_params(state.opt_state)
  if swa is not None:
    results["swa"] = _evaluate_swa(*swa, state.mask, data, compiled.eval_step, step,
                                   trainer)
    swa_params = parallel.gather_to_host(swa[0])
    if is_main:
      files.replace_folder(out / "swa", lambda path: pretrained.save_pretrained(
          path, masks_lib.apply_mask(swa_params, host_mask), model.config, task,
          model.tokenizer_dir))
  if host_mask is not None:
    results["sparsity"] = masks_lib.sparsity(host_mask)
  if is_main:
    reports.plot_curves(jsonl.read(out / "metrics.jsonl"), trainer.main_metric,
                        out / "curves.png")
    files.write_json(out / "results.json", results)
  return results


def _save_model(folder: Path, state: state_lib.TrainState, model: pretrained.Pretrained,
                task: TaskSpec, predictions: dict | None = None) -> None:
  """A Hugging Face folder of the params as the forward pass sees them (pruned
  weights zeroed), with their mask beside them in pruned runs and the dev
  predictions they scored (``PREDICTIONS_FILE``) when given. On several hosts
  every process gathers the sharded params and the first one writes."""
  # Momentum-SAM holds perturbed weights: the model is the weights behind them.
  params, mask = parallel.gather_to_host((unperturbed(state.params, state.opt_state),
                                          state.mask))
  if jax.process_index() != 0:
    return

  def write(path: Path) -> None:
    pretrained.save_pretrained(path, masks_lib.apply_mask(params, mask),
                               model.config, task, model.tokenizer_dir)
    if mask is not None:
      masks_lib.save_mask(path / masks_lib.MASK_FILE, mask)
    if predictions:
      files.write_json(path / PREDICTIONS_FILE, predictions)
  files.replace_folder(folder, write)  # never half a model, whenever the run is killed


def _evaluate_swa(params, count, mask, data: RunData, eval_step, step: int,
                  trainer: Trainer) -> dict:
  """Scores of the SWA average of ``count`` checkpoints, logged as an ``eval``
  row with ``"swa": true``."""
  row = {"step": step, "epoch": trainer.schedule.epoch(step), "kind": "eval", "swa": True,
         "swa_count": int(count), **split_scores(eval_step, params, mask, data.evals)}
  trainer.log.write(row)
  say(f"SWA average of {int(count)} checkpoints: {shown(row)}")
  return {k: v for k, v in row.items() if "/" in k or k == "swa_count"}
