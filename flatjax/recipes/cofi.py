"""CoFi structured pruning with distillation (Xia et al. 2022), as Na et al. (2022) run it.

The student BERT learns hard-concrete gates (:mod:`flatjax.sparsity.hardconcrete`)
over attention heads, whole attention blocks, FFN neurons, whole FFN blocks and
hidden dimensions, while it distils from a fine-tuned teacher
(:mod:`flatjax.train.distill`) and a Lagrangian term pulls the expected encoder
sparsity to the target. Only the teacher's optimizer (Adam or SAM) differs
between the paper's runs; this procedure is the same for both. The schedule:

1. ``prepruning_epochs``: distillation only, no gates (CoFi's
   ``prepruning_finetune_epochs``);
2. the rest of ``pruning_epochs``: gates sampled every step, the Lagrangian
   ``lambda1 (s - t) + lambda2 (s - t)^2`` with the target ``t`` warmed up
   linearly from 0 over ``lagrangian_warmup_epochs``; the student's weights
   (AdamW-style Adam, lr ``lr`` decaying linearly to 0 over the pruning
   phase) and the gates' log-alphas (Adam, ``reg_lr``) descend, the lambdas
   ascend (Adam on the negated gradient, ``reg_lr``);
3. ``finetune_epochs``: the deterministic test-time gates fixed, distillation
   kept, constant lr ``finetune_lr`` (CoFi's fine-tuning run after pruning).

Evaluation (every epoch, or ``eval_every`` steps) runs the student under its
deterministic gates. The best fine-tuning evaluation is exported
(:func:`flatjax.sparsity.structured.prune_model`) to ``pruned/``, a smaller
dense BERT whose outputs equal the gated model's. The run folder::

  cofi.json        the settings
  metrics.jsonl    train rows (losses, expected and target sparsity, lambdas) and eval rows
  checkpoints/     orbax checkpoints: a stopped run continues with resume
  gates.safetensors  the gates' log-alphas and deterministic values at the end
  structure.json   what the deterministic gates keep, layer by layer
  pruned/          the exported model (Hugging Face layout; flatjax config fields where
                   layers differ, else a standard BERT that transformers loads)
  results.json     teacher and pruned dev metrics and predictions, sparsity, parameter counts,
                   inference speed

Defaults are the paper's (Table 2 recipe): target 95%, 20 + 20 epochs, lr 2e-5,
fine-tuning lr 3e-5, batch 32, layer-distillation weight by task, embeddings
frozen. Differences from CoFi's code are named where they are made.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from flatjax import files, parallel, provenance
from flatjax.console import say, shown
from flatjax.data import pipeline
from flatjax.data.config import DataConfig
from flatjax.data.tasks import TaskSpec
from flatjax.errors import FlatjaxInputError, require_positive
from flatjax.models import pretrained
from flatjax.models.bert import DTYPES, MODEL_INPUTS
from flatjax.models.config import ModelConfig
from flatjax.optim import accumulate
from flatjax.recipes import finetune
from flatjax.sparsity import hardconcrete as hc
from flatjax.sparsity import structured
from flatjax.train import distill, runs
from flatjax.train.config import RunConfig
from flatjax.train.state import DEFAULT_PRNG_IMPL
from flatjax.train.evaluation import scores_and_predictions, split_scores
from flatjax.train.steps import make_eval_step
from flatjax.train.trainer import (Hooks, Schedule, Trainer, check_driver_folder,
                                   device_batch)

STUDENT_INITS = ("pretrained", "teacher")
# CoFi starts the coarse gates and the hidden gates all but surely open
# (log-alpha 10, ``CofiConfig.gate_init``) and the FFN neuron gates at droprate
# 0.5 (log-alpha 0).
COFI_GATE_INIT = 10.0
COARSE_GATES = ("head", "mha", "ffn", "hidden")


@dataclasses.dataclass
class CofiConfig:
  """A CoFi run (the ``flatjax cofi`` flags map 1:1).

  ``teacher``: a ``flatjax train`` run folder (its ``best/`` model, else
  ``final/``; task, data and base model are read from its settings) or a
  model folder. ``student``: ``"pretrained"`` starts from the teacher run's
  pre-trained model with a fresh head (CoFi's choice), ``"teacher"`` from the
  teacher's fine-tuned weights, anything else is a model name or folder.
  """
  teacher: str
  """a flatjax train run folder (its best/ model; task, data and base model are read from it) or
  a fine-tuned model folder"""
  output: str
  """run folder"""
  task: str | None = None
  """the task (default: the teacher's)"""
  data: str | None = None
  """the training data (default: the teacher run's)"""
  eval_data: str | None = None
  """the evaluation data, if not in data"""
  student: str = "pretrained"
  """'pretrained': the teacher run's pre-trained model (CoFi's start, default); 'teacher': the
  teacher's fine-tuned weights; or a model"""
  target_sparsity: float = 0.95
  """of the encoder's prunable weights (0.95)"""
  pruning_epochs: float = 20.0
  """epochs with gates learned, the distillation-only ones included (20)"""
  prepruning_epochs: float = 1.0
  """distillation-only epochs before the gates start (1)"""
  lagrangian_warmup_epochs: float = 2.0
  """epochs over which the target sparsity rises from 0 (2)"""
  finetune_epochs: float = 20.0
  """epochs with the gates fixed, distillation kept (20)"""
  lr: float = 2e-5
  """pruning-phase learning rate"""
  finetune_lr: float = 3e-5
  """fine-tuning-phase lr, constant (3e-5)"""
  reg_lr: float = 0.01
  """lr of the gates and the Lagrange multipliers (0.01)"""
  # Log-alpha mean of the head, mha, ffn and hidden gates at the start. In short
  # runs with a raised reg_lr, 10 fails: while the expected sparsity is above the
  # warming-up target the Lagrangian pushes these gates further open, where the
  # sigmoid is flat and Adam's second moment remembers the early gradients, so
  # they stay open and only the neuron gates prune (a simulation of the gates
  # alone: stuck at 67% of an 80% target; with 3, on target).
  gate_init: float = COFI_GATE_INIT
  """initial log-alpha of the head, attention-block, FFN-block and hidden gates (CoFi's 10: all
  but surely open; lower for short runs)"""
  batch_size: int = 32
  """training examples per step"""
  grad_accum: int = 1
  """micro-batches per step: the same update with a K-th of the activations in memory"""
  eval_batch_size: int = 64
  """examples per evaluation batch"""
  max_length: int | None = None
  """tokens per sequence (null: the task's, 128; SQuAD 384)"""
  doc_stride: int = 128
  """SQuAD: overlap of a long context's windows"""
  dtype: str = "float32"
  """compute dtype of teacher and student (params stay float32)"""
  layer_weight: float | None = None
  """layer-distillation weight (default by task: 0.9 SST-2/QNLI, 0.7 QQP/MNLI, 0.9 others)"""
  prediction_weight: float | None = None
  """prediction-distillation weight (default by task: 0.1 or 0.3)"""
  temperature: float = 2.0
  """distillation temperature (2)"""
  gates: tuple[str, ...] = hc.GATE_NAMES
  """gate groups to learn (default all)"""
  freeze_embeddings: bool = True
  """keep the embeddings fixed, as CoFi does (false: update them too)"""
  seed: int = 0
  """data order, dropout, gates' noise and new heads"""
  max_train_examples: int | None = None
  """use only the first N training examples"""
  max_eval_examples: int | None = None
  """evaluate on the first N examples of each split"""
  eval_every: int | None = None
  """evaluate every N steps (null: every epoch)"""
  log_every: int = 20
  """steps between training-metric rows"""
  pad_to: str = "longest"
  """pad each batch to its longest sequence or always to max_length"""
  stop_after_steps: int | None = None
  """stop (checkpointed) after N steps; continue later with --resume"""
  mesh: str | None = None
  """device mesh: the batch split over data, the big kernels over model ("data=4,model=2"; null:
  every device data parallel)"""
  progress: bool = True
  """show a progress bar"""

  def validate(self) -> None:
    if not 0.0 < self.target_sparsity < 1.0:
      raise FlatjaxInputError(f"target sparsity must be in (0, 1), got {self.target_sparsity}")
    if self.pruning_epochs <= 0 or self.finetune_epochs < 0:
      raise FlatjaxInputError("pruning epochs must be positive and fine-tuning epochs "
                              f"non-negative, got {self.pruning_epochs}, {self.finetune_epochs}")
    if not 0 <= self.prepruning_epochs < self.pruning_epochs:
      raise FlatjaxInputError(
          f"prepruning epochs ({self.prepruning_epochs}) must be in [0, pruning epochs "
          f"{self.pruning_epochs})")
    if self.lagrangian_warmup_epochs < 0:
      raise FlatjaxInputError("lagrangian warmup epochs must be non-negative")
    require_positive(None, self, "lr", "finetune_lr", "reg_lr", "batch_size", "grad_accum",
                     "eval_batch_size", "max_length", "doc_stride", "max_train_examples",
                     "max_eval_examples", "eval_every", "stop_after_steps", "log_every")
    if self.batch_size % self.grad_accum:
      raise FlatjaxInputError(f"batch size {self.batch_size} does not split into "
                              f"{self.grad_accum} equal micro-batches (grad-accum)")
    if not math.isfinite(self.gate_init):
      raise FlatjaxInputError(f"gate-init must be finite, got {self.gate_init}")
    if not self.gates:
      raise FlatjaxInputError("no gate groups to learn")
    unknown = sorted(set(self.gates) - set(hc.GATE_NAMES))
    if unknown:
      raise FlatjaxInputError(f"unknown gate groups {unknown}; known: {', '.join(hc.GATE_NAMES)}")
    if self.seed < 0:
      raise FlatjaxInputError(f"seed must be non-negative, got {self.seed}")
    if self.dtype not in DTYPES:
      raise FlatjaxInputError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
    self.distill_config()  # weights and temperature
    if self.mesh is not None:
      parallel.MeshConfig.parse(self.mesh)

  def distill_config(self, task: str | None = None) -> distill.DistillConfig:
    base = distill.DistillConfig.for_task(task) if task else distill.DistillConfig()
    return dataclasses.replace(
        base, temperature=self.temperature,
        layer_weight=base.layer_weight if self.layer_weight is None else self.layer_weight,
        prediction_weight=(base.prediction_weight if self.prediction_weight is None
                           else self.prediction_weight))


def resolve_teacher(path: str, task: str | None = None) -> runs.FineTuned:
  """A teacher from a ``flatjax train`` run folder or a model folder."""
  return runs.resolve_finetuned(path, task, role="teacher")


@struct.dataclass
class CofiState:
  """The whole trainable state: one pytree, jitted and checkpointed whole.
  ``params``: ``{"model": student params, "layer_map": {"kernel", "bias"}}``."""
  params: Any
  log_alpha: Any
  lambdas: jax.Array
  opt_state: Any
  gate_opt_state: Any
  lambda_opt_state: Any
  step: jax.Array
  rng: jax.Array


def _task_kind(task: TaskSpec) -> str:
  return "span" if task.kind == "span" else "regression" if task.is_regression else "classification"


def _model_tx(schedule, freeze_embeddings: bool, params: Any) -> optax.GradientTransformation:
  """Adam with ``schedule``; the embeddings get no update when frozen (CoFi's
  ``--freeze_embeddings``). The same structure for every schedule, so the
  fine-tuning phase's state replaces the pruning phase's in place."""
  adam = optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(schedule))
  if not freeze_embeddings:
    return adam
  labels = jax.tree_util.tree_map_with_path(
      lambda path, _: "frozen" if "embeddings" in jax.tree_util.keystr(path) else "train", params)
  return optax.multi_transform({"train": adam, "frozen": optax.set_to_zero()}, labels)


def _distill_loss_fn(student_module, teacher_module, task: TaskSpec,
                     dcfg: distill.DistillConfig, teacher_layers: list[int]) -> Callable:
  """``distill_loss(params, teacher_params, batch, gates, key) -> (loss, aux)``:
  the student (under ``gates``, dropout from ``key``) against the teacher."""
  kind = _task_kind(task)
  t_index = jnp.asarray([i + 1 for i in teacher_layers])  # hidden_states[0]: embeddings

  def distill_loss(params, teacher_params, batch, gates, key, **whole_batch):
    inputs = [batch[k] for k in MODEL_INPUTS]
    teacher = teacher_module.apply({"params": teacher_params}, *inputs,
                                   deterministic=True, output_hidden_states=True)
    teacher = jax.lax.stop_gradient(teacher)
    student = student_module.apply({"params": params["model"]}, *inputs,
                                   deterministic=False, output_hidden_states=True,
                                   gates=gates, rngs={"dropout": key})
    states = jnp.stack(student["hidden_states"][1:])
    mapped = states @ params["layer_map"]["kernel"] + params["layer_map"]["bias"]
    t_states = jnp.stack(teacher["hidden_states"])[t_index]
    existing = None if gates is None or "mha" not in gates else gates["mha"] != 0
    weight = distill.token_weights(batch["attention_mask"], batch["example_weight"])
    return distill.distillation_loss(dcfg, kind, student, teacher, mapped, t_states, weight,
                                     batch["example_weight"], existing, **whole_batch)
  return distill_loss


# The aux entries a micro-batch contributes its share of (the rest are the whole batch's).
_SUMMED_AUX = ("layer_loss", "prediction_loss")


def _whole_batch(loss: Callable, micro_batches: int) -> Callable:
  """``loss(diff, batch, key, **whole_batch) -> (value, aux)``, a distillation loss, to
  the ``value_and_grad`` over ``diff`` of the whole batch, ``micro_batches`` at a time.

  CoFi's loss is no mean of micro-batch losses: its means divide by the whole batch's
  real tokens and rows, and its layer alignment is an argmin over the whole batch's loss
  matrix. So with K > 1 a forward scan over the micro-batches first sums that matrix;
  then each micro-batch's loss under the batch's totals and matrix is its exact share
  (:func:`flatjax.train.distill.distillation_loss`), and a second scan sums the shares'
  values and gradients. One micro-batch's activations live at a time, at the cost of one
  more forward pass of student and teacher. Micro-batch ``i`` draws its dropout from
  ``fold_in(key, i)`` in both.
  """
  value_and_grad = jax.value_and_grad(loss, has_aux=True)
  if micro_batches == 1:
    return value_and_grad

  def whole(diff, batch, key):
    totals = distill.batch_totals(batch["attention_mask"], batch["example_weight"])
    micro = (jnp.arange(micro_batches), accumulate.split_batch(batch, micro_batches))
    fixed = jax.lax.stop_gradient(diff)

    def matrix_of(i, b):
      return loss(fixed, b, jax.random.fold_in(key, i), totals=totals)[1]["loss_matrix"]

    def add_matrix(total, xs):
      return total + matrix_of(*xs), None

    first = jax.tree.map(lambda x: x[0], micro)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(matrix_of, *first))
    matrix, _ = jax.lax.scan(add_matrix, zeros, micro)

    def share_of(i, b):
      (value, aux), grads = value_and_grad(diff, b, jax.random.fold_in(key, i), totals=totals,
                                           alignment_matrix=matrix)
      return (value, {k: aux[k] for k in _SUMMED_AUX}, grads), aux["alignment"]

    def add_share(total, xs):
      share, alignment = share_of(*xs)
      return jax.tree.map(jnp.add, total, share), alignment

    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(share_of, *first))[0]
    (value, sums, grads), alignments = jax.lax.scan(add_share, zeros, micro)
    return (value, {**sums, "alignment": alignments[0], "loss_matrix": matrix}), grads
  return whole


def _step_keys(state: CofiState, prng_impl: str) -> tuple[jax.Array, jax.Array]:
  """(dropout key, gate-sampling key) of this step. Derived by fold_in, not
  split: XLA:CPU fuses threefry4x32's split into the dropout keys' chain and
  recomputes it per use, which made a tiny model's step take ~15 s."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng, impl=prng_impl), state.step)
  return key, jax.random.fold_in(key, 1)


def _update_params(state: CofiState, grads, tx) -> tuple[Any, Any]:
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return optax.apply_updates(state.params, updates), opt_state


def _loss_metrics(loss, aux) -> dict:
  return {"loss": loss, "layer_loss": aux["layer_loss"],
          "prediction_loss": aux["prediction_loss"]}


def _distill_step(distill_loss: Callable, tx, fixed_gates: bool, prng_impl: str,
                  micro_batches: int) -> Callable:
  """A step of distillation alone: no gates (``fixed_gates`` False, before
  pruning) or the deterministic gates (fine-tuning after pruning)."""
  def step(state, teacher_params, batch):
    key, _ = _step_keys(state, prng_impl)
    gates = None if not fixed_gates else hc.deterministic_gates(state.log_alpha)

    def loss(params, b, k, **whole_batch):
      return distill_loss(params, teacher_params, b, gates, k, **whole_batch)
    (loss, aux), grads = _whole_batch(loss, micro_batches)(state.params, batch, key)
    params, opt_state = _update_params(state, grads, tx)
    return (state.replace(params=params, opt_state=opt_state, step=state.step + 1),
            _loss_metrics(loss, aux))
  return step


def _pruning_step(distill_loss: Callable, dims: hc.ModelDims, target: float, prune_start: int,
                  warmup_steps: int, txs: tuple, prng_impl: str, micro_batches: int) -> Callable:
  """A step of the pruning phase: sampled gates (one draw for the whole batch), the
  Lagrangian on the expected sparsity; the weights and log-alphas descend, the
  multipliers ascend. ``txs``: the weights', the gates' and the multipliers' optimizers."""
  prune_tx, gate_tx, lambda_tx = txs

  def step(state, teacher_params, batch):
    key, gate_key = _step_keys(state, prng_impl)
    t = hc.target_sparsity_at(state.step - prune_start, target, warmup_steps)

    def loss(diff, b, k, **whole_batch):
      params, log_alpha = diff
      return distill_loss(params, teacher_params, b, hc.sample_gates(gate_key, log_alpha), k,
                          **whole_batch)

    def lagrangian(log_alpha, lambdas):
      s = hc.expected_sparsity(log_alpha, dims)
      return hc.lagrangian(s, t, lambdas[0], lambdas[1]), s

    (loss, aux), (g_p, g_distill) = _whole_batch(loss, micro_batches)(
        (state.params, state.log_alpha), batch, key)
    (lag, s), (g_lag, g_lam) = jax.value_and_grad(lagrangian, argnums=(0, 1), has_aux=True)(
        state.log_alpha, state.lambdas)
    g_la = jax.tree.map(jnp.add, g_distill, g_lag)
    params, opt_state = _update_params(state, g_p, prune_tx)
    upd, gate_opt_state = gate_tx.update(g_la, state.gate_opt_state, state.log_alpha)
    log_alpha = optax.apply_updates(state.log_alpha, upd)
    # Gradient ascent on the multipliers: descend on the negated gradient.
    upd, lambda_opt_state = lambda_tx.update(-g_lam, state.lambda_opt_state, state.lambdas)
    lambdas = optax.apply_updates(state.lambdas, upd)
    new = state.replace(params=params, opt_state=opt_state, log_alpha=log_alpha,
                        lambdas=lambdas, gate_opt_state=gate_opt_state,
                        lambda_opt_state=lambda_opt_state, step=state.step + 1)
    return new, {**_loss_metrics(loss, aux), "lagrangian": lag, "expected_sparsity": s,
                 "target_sparsity": t, "lambda1": lambdas[0], "lambda2": lambdas[1]}
  return step


class Placement(NamedTuple):
  """Where a run's arrays live on a device mesh: the state's and the teacher
  params' shardings, and the global batch sizes the host feeds."""
  mesh: Any
  state: Any
  teacher: Any
  batch_size: int
  eval_batch_size: int


class CofiSteps:
  """The jitted steps of a run: ``prepruning``, ``pruning``, ``finetune`` (each
  ``(state, teacher_params, batch) -> (state, metrics)``) and ``evaluate``
  (``(params, gates, batch) -> outputs``). With ``micro_batches`` K > 1 each
  step takes the whole batch's update K micro-batches at a time (:func:`_whole_batch`).

  With a :class:`Placement`, the steps keep the state and teacher sharded as
  placed, take the global host batch (each process its rows), split it over
  ``data`` and return replicated metrics and logits."""

  def __init__(self, student_module, teacher_module, task: TaskSpec, dims: hc.ModelDims,
               dcfg: distill.DistillConfig, teacher_layers: list[int], target: float,
               prune_start: int, warmup_steps: int, prune_tx, finetune_tx, gate_tx, lambda_tx,
               prng_impl: str = DEFAULT_PRNG_IMPL, placement: Placement | None = None,
               micro_batches: int = 1):
    distill_loss = _distill_loss_fn(student_module, teacher_module, task, dcfg, teacher_layers)

    def evaluate_step(params, gates, batch):
      out = student_module.apply({"params": params}, *(batch[k] for k in MODEL_INPUTS),
                                 deterministic=True, gates=gates)
      return {k: v for k, v in out.items() if k.endswith("logits")}

    train = _train_jit(placement)
    self.prepruning = train(_distill_step(distill_loss, prune_tx, False, prng_impl,
                                          micro_batches))
    self.pruning = train(_pruning_step(distill_loss, dims, target, prune_start, warmup_steps,
                                       (prune_tx, gate_tx, lambda_tx), prng_impl, micro_batches))
    self.finetune = train(_distill_step(distill_loss, finetune_tx, True, prng_impl,
                                        micro_batches))
    self.evaluate = _eval_jit(evaluate_step, placement)
    self.deterministic_gates = jax.jit(hc.deterministic_gates)


def _train_jit(p: Placement | None) -> Callable:
  if p is None:
    return lambda fn: jax.jit(fn, donate_argnums=0)
  return lambda fn: parallel.host_fed(jax.jit(
      fn, in_shardings=(p.state, p.teacher, parallel.batch_sharding(p.mesh)),
      out_shardings=(p.state, parallel.replicated(p.mesh)), donate_argnums=0),
      p.batch_size, p.mesh)


def _eval_jit(evaluate_step: Callable, p: Placement | None) -> Callable:
  if p is None:
    return jax.jit(evaluate_step)
  return parallel.host_fed(parallel.jit_eval_step(
      evaluate_step, p.state.params["model"], parallel.replicated(p.mesh), p.mesh),
      p.eval_batch_size, p.mesh)


def _settings(config: CofiConfig) -> dict:
  d = dataclasses.asdict(config)
  for k in ("output", "progress", "stop_after_steps", "log_every", "eval_batch_size", "mesh"):
    d.pop(k)
  d["gates"] = list(d["gates"])
  return d


def structure_sparsity(config, gates: dict) -> tuple[float, int]:
  """``(sparsity, remaining)``: the share of the encoder's prunable weights
  (:func:`structured.encoder_params`) that ``gates`` remove, and how many remain."""
  remaining = structured.encoder_params(structured.pruned_config(config, gates))
  return 1.0 - remaining / structured.encoder_params(config), remaining


def inference_speed(eval_steps: dict, split: pipeline.SplitData, repeats: int = 3) -> dict:
  """Examples per second of each ``name -> (eval_step, params, gates)`` over the
  whole ``split``, the models' passes alternating, best of ``repeats`` (after
  a compiling pass)."""
  batches = [{k: b[k] for k in MODEL_INPUTS} for b in split.batcher.epoch(0)]
  n = split.num_rows
  best = {name: math.inf for name in eval_steps}
  for r in range(repeats + 1):
    for name, (step, params, gates) in eval_steps.items():
      t0 = time.perf_counter()
      for b in batches:
        out = step(params, gates, b)
      jax.block_until_ready(out)
      if r:
        best[name] = min(best[name], time.perf_counter() - t0)
  return {name: n / t for name, t in best.items()}


@dataclasses.dataclass
class _Models:
  """What a CoFi run reads: the teacher, the student it starts from, the data."""
  info: runs.FineTuned
  task: TaskSpec
  teacher: pretrained.Pretrained
  student: pretrained.Pretrained
  train_config: Any          # finetune.TrainConfig: the data settings
  data: Any                  # finetune.RunData


def _load(config: CofiConfig, resume: bool) -> tuple[_Models, bool]:
  """The teacher, student and data; checks the output folder first.
  Returns them and whether the folder already holds this run."""
  info = resolve_teacher(config.teacher, config.task)
  task = info.task
  data_source = config.data if config.data is not None else info.data
  student_source = {"teacher": str(info.model_dir),
                    "pretrained": info.base_model}.get(config.student, config.student)
  if student_source is None:
    raise FlatjaxInputError("the teacher is a model folder, not a flatjax run, so its "
                            "pre-trained model is unknown: pass --student MODEL (or teacher)")
  out = Path(config.output)
  settings = {"config": _settings(config), "task": task.name, "teacher_model": str(
      info.model_dir), "teacher_optimizer": info.optimizer,
      "student_source": str(student_source), "data": data_source}
  has_run = check_driver_folder(out, "cofi.json", settings, resume, "a CoFi run")
  dtype = DTYPES[config.dtype]
  teacher = pretrained.from_pretrained(info.model_dir, task, dtype=dtype)
  student = pretrained.from_pretrained(student_source, task, seed=config.seed, dtype=dtype)
  if student.config.is_structurally_pruned or teacher.config.is_structurally_pruned:
    raise FlatjaxInputError("CoFi needs unpruned teacher and student models")
  train_config = finetune.TrainConfig(
      data=DataConfig(task=task.name, source=data_source, eval_source=config.eval_data,
                      max_length=config.max_length, doc_stride=config.doc_stride,
                      pad_to=config.pad_to, max_train_examples=config.max_train_examples,
                      max_eval_examples=config.max_eval_examples),
      model=ModelConfig(name=str(student_source)),
      run=RunConfig(output=str(out), seed=config.seed, batch_size=config.batch_size,
                    eval_batch_size=config.eval_batch_size))
  data = finetune.load_data(train_config, student)
  if not has_run:
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / "cofi.json", settings)
  provenance.write_run_json(out, config, {**train_config.data_sources(),
                                          "teacher": info.model_dir}, resumed=has_run)
  return _Models(info, task, teacher, student, train_config, data), has_run


@dataclasses.dataclass(frozen=True)
class _Phases:
  """CoFi's schedule in steps: distillation only before ``prune_start``, gates
  learned until ``prune_total`` (the target warmed up over ``warmup``),
  fine-tuning under fixed gates until ``total``."""
  steps_per_epoch: int
  prune_start: int
  prune_total: int
  warmup: int
  total: int

  @classmethod
  def of(cls, config: CofiConfig, steps_per_epoch: int) -> "_Phases":
    spe = steps_per_epoch
    prune_total = max(1, math.ceil(config.pruning_epochs * spe))
    return cls(spe, min(prune_total - 1, int(round(config.prepruning_epochs * spe))),
               prune_total, int(round(config.lagrangian_warmup_epochs * spe)),
               prune_total + math.ceil(config.finetune_epochs * spe))

  def name(self, step: int) -> str:
    """The phase of the step with index ``step`` (0-based)."""
    return ("distill" if step < self.prune_start else
            "prune" if step < self.prune_total else "finetune")


def _initial_state(config: CofiConfig, m: _Models, phases: _Phases):
  """The first :class:`CofiState`, its jitted :class:`CofiSteps`, and the
  fine-tuning phase's optimizer."""
  dims = hc.ModelDims.from_config(m.student.config)
  shapes = dims.gate_shapes(config.gates)
  key = jax.random.key(config.seed, impl=DEFAULT_PRNG_IMPL)
  init_key, map_key = jax.random.split(jax.random.fold_in(key, 1))
  d_s, d_t = m.student.config.hidden_size, m.teacher.config.hidden_size
  params = {"model": m.student.params, "layer_map": {
      # CoFi's layer_transformation: a Linear(d, d), here initialised as BERT's dense layers.
      "kernel": m.student.config.initializer_range * jax.random.normal(map_key, (d_s, d_t)),
      "bias": jnp.zeros((d_t,))}}
  log_alpha = hc.init_log_alpha(init_key, shapes,
                                means={k: config.gate_init for k in COARSE_GATES if k in shapes})
  prune_tx = _model_tx(optax.linear_schedule(config.lr, 0.0, phases.prune_total),
                       config.freeze_embeddings, params)
  finetune_tx = _model_tx(optax.constant_schedule(config.finetune_lr), config.freeze_embeddings,
                          params)
  gate_tx, lambda_tx = optax.adam(config.reg_lr), optax.adam(config.reg_lr)
  lambdas = jnp.zeros((2,), jnp.float32)
  state = CofiState(params=params, log_alpha=log_alpha, lambdas=lambdas,
                    opt_state=prune_tx.init(params), gate_opt_state=gate_tx.init(log_alpha),
                    lambda_opt_state=lambda_tx.init(lambdas), step=jnp.zeros((), jnp.int32),
                    rng=jax.random.key_data(key))
  dcfg = config.distill_config(m.task.name)
  # CoFi matches 4 teacher layers; a teacher with fewer matches all of its own.
  dcfg = dataclasses.replace(dcfg, num_teacher_layers=min(
      dcfg.num_teacher_layers, m.teacher.config.num_hidden_layers))
  t_layers = distill.teacher_layers(m.teacher.config.num_hidden_layers, dcfg.num_teacher_layers)
  state, placement = _place(config, m, state)
  steps = CofiSteps(m.student.module, m.teacher.module, m.task, dims, dcfg, t_layers,
                    config.target_sparsity, phases.prune_start, phases.warmup, prune_tx,
                    finetune_tx, gate_tx, lambda_tx, placement=placement,
                    micro_batches=config.grad_accum)
  return state, steps, finetune_tx, dims, placement


def _place(config: CofiConfig, m: _Models, state: CofiState):
  """On a mesh (``config.mesh``, or several devices): the state and the teacher
  sharded by BERT's rules (``m.teacher.params`` replaced by the sharded copy)."""
  mesh = parallel.mesh_for_run(config.mesh)
  if mesh is None:
    return state, None
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size, mesh)
  state, shardings = parallel.shard_state(state, state.params, mesh)
  teacher = parallel.param_shardings(m.teacher.params, mesh)
  m.teacher = dataclasses.replace(m.teacher, params=jax.device_put(m.teacher.params, teacher))
  return state, Placement(mesh, shardings, teacher, config.batch_size, config.eval_batch_size)


def _hooks(out: Path, m: _Models, phases: _Phases, steps: CofiSteps, finetune_tx,
           dims) -> Hooks:
  def gates_at(state, step: int):
    return None if step <= phases.prune_start else steps.deterministic_gates(state.log_alpha)

  def evaluate(state, step):
    gates = gates_at(state, step)
    row = split_scores(steps.evaluate, state.params["model"], gates, m.data.evals)
    if gates is not None:
      row["sparsity"], row["remaining_params"] = structure_sparsity(
          m.student.config, jax.device_get(gates))
      row["expected_sparsity"] = float(hc.expected_sparsity(state.log_alpha, dims))
    return row

  def save_best(state, step):
    _export(out / "pruned", m.student, parallel.gather_to_host(state.params["model"]),
            jax.device_get(gates_at(state, step)), m.task)

  def before_step(state, step, meta):
    if step >= phases.prune_total and not meta["finetune_started"]:
      # The fine-tuning phase: a fresh optimizer at its own (constant) rate.
      meta["finetune_started"] = True
      return state.replace(opt_state=finetune_tx.init(state.params))
    return state

  def train_step(state, batch, step):
    fn = (steps.prepruning if step < phases.prune_start else
          steps.pruning if step < phases.prune_total else steps.finetune)
    return fn(state, m.teacher.params, device_batch(batch))

  def note(row):
    return f", structure sparsity {row['sparsity']:.3f}" if "sparsity" in row else ""

  return Hooks(train_step=train_step, evaluate=evaluate, save_best=save_best,
               best_from=phases.prune_total + 1, fields=lambda step: {"phase": phases.name(step)},
               before_step=before_step, note=note)


def run_cofi(config: CofiConfig, resume: bool = False) -> dict:
  """Runs (or resumes) CoFi; returns the results summary (also ``results.json``)."""
  config.validate()
  m, _ = _load(config, resume)
  out, data = Path(config.output), m.data
  phases = _Phases.of(config, data.train.batcher.num_batches)
  state, steps, finetune_tx, dims, placement = _initial_state(config, m, phases)
  plan = Schedule(phases.total, phases.steps_per_epoch, eval_every=config.eval_every,
                  log_every=config.log_every, stop_after_steps=config.stop_after_steps,
                  boundaries=frozenset({phases.prune_start, phases.prune_total}))
  trainer = Trainer(out, plan, f"{data.evals[0].split}/{m.task.main_metric}",
                    progress=config.progress, meta={"finetune_started": False, "teacher": None})
  state = trainer.restore(state, resume)
  start, meta = int(state.step), trainer.meta
  teacher_eval = jax.jit(make_eval_step(m.teacher.module))
  if meta["teacher"] is None:
    meta["teacher"], meta["teacher_predictions"] = scores_and_predictions(
        teacher_eval, m.teacher.params, None, data.evals)
    say(f"teacher ({m.info.optimizer or 'model'}): {shown(meta['teacher'])}")
  if start < phases.total:
    say(f"CoFi on {m.task.name}: {data.train.num_examples} examples, {phases.steps_per_epoch} "
        f"steps/epoch; distillation only to step {phases.prune_start}, gates to step "
        f"{phases.prune_total} (target {config.target_sparsity:.0%}, warm-up {phases.warmup} "
        f"steps), fine-tuning to step {phases.total}"
        + (f", mesh {parallel.describe(placement.mesh)}" if placement is not None else "")
        + (f"; resuming at step {start}" if start else ""))
  state, step = trainer.run(state, data.train.batcher,
                            _hooks(out, m, phases, steps, finetune_tx, dims))
  if step < phases.total:
    return {"step": step, "total_steps": phases.total, "finished": False}
  return _finish(out, config, m, teacher_eval, state, trainer.meta, steps, dims, phases.total)


def _export(folder: Path, student, params, gates, task) -> None:
  small_config, small_params = structured.prune_model(student.config, params, gates)
  files.replace_folder(folder, lambda path: pretrained.save_pretrained(
      path, small_params, small_config, task, student.tokenizer_dir))


def _finish(out: Path, config: CofiConfig, m: _Models, teacher_eval, state, meta,
            steps: CofiSteps, dims, total: int) -> dict:
  from safetensors.numpy import save_file
  task, teacher, student, data = m.task, m.teacher, m.student, m.data
  gates = jax.device_get(steps.deterministic_gates(state.log_alpha))
  log_alpha = jax.device_get(state.log_alpha)
  save_file({**{f"log_alpha/{k}": np.asarray(v) for k, v in log_alpha.items()},
             **{f"gates/{k}": np.asarray(v) for k, v in gates.items()}},
            str(out / "gates.safetensors"))
  units = structured.remaining_units(student.config, gates)
  (out / "structure.json").write_text(json.dumps(units) + "\n")
  sparsity, remaining = structure_sparsity(student.config, gates)

  pruned = pretrained.from_pretrained(out / "pruned", task, dtype=DTYPES[config.dtype])
  pruned_eval = jax.jit(make_eval_step(pruned.module))
  pruned_scores, pruned_predictions = scores_and_predictions(pruned_eval, pruned.params, None,
                                                             data.evals)
  speed = inference_speed({"teacher": (teacher_eval, teacher.params, None),
                           "pruned": (pruned_eval, pruned.params, None)}, data.evals[0])
  count = lambda tree: int(sum(np.size(x) for x in jax.tree.leaves(tree)))  # noqa: E731
  main = f"{data.evals[0].split}/{task.main_metric}"
  results = {
      "task": task.name, "teacher_optimizer": m.info.optimizer,
      "target_sparsity": config.target_sparsity, "sparsity": sparsity,
      "expected_sparsity": float(hc.expected_sparsity(state.log_alpha, dims)),
      "encoder_params": {"teacher": structured.encoder_params(teacher.config),
                         "pruned": structured.encoder_params(pruned.config)},
      "total_params": {"teacher": count(teacher.params), "pruned": count(pruned.params)},
      "teacher": meta["teacher"], "pruned": pruned_scores, "main_metric": main,
      # Dev labels and predictions per split (SplitData.per_example), to pair the student
      # with its teacher example by example; a run begun before they were kept has none
      # for the teacher.
      "predictions": {"teacher": meta.get("teacher_predictions"), "pruned": pruned_predictions},
      "best_step": meta["best_step"], "total_steps": total,
      "examples_per_s": speed, "speedup": speed["pruned"] / speed["teacher"],
      "structure": {"hidden": len(units["hidden"]),
                    "heads": [len(layer["heads"]) for layer in units["layers"]],
                    "neurons": [len(layer["neurons"]) for layer in units["layers"]]},
      "train_seconds": meta["train_seconds"], "finished": True,
  }
  assert remaining == results["encoder_params"]["pruned"]
  files.write_json(out / "results.json", results)
  say(f"pruned to {sparsity:.1%} of the encoder ({remaining} of "
           f"{results['encoder_params']['teacher']} weights): {main} "
           f"{pruned_scores[main]:.2f} (teacher {meta['teacher'][main]:.2f}); inference "
           f"{results['speedup']:.2f}x the teacher's examples/s")
  if pruned.config.is_structurally_pruned:
    say(f"{out / 'pruned'} has per-layer widths that transformers' BERT cannot load; "
        f"`flatjax export {out} --format onnx` makes a model that runs outside flatjax")
  return results
