"""The run section of a training configuration: where it writes, how long it
trains, how often it evaluates, logs and checkpoints."""

from __future__ import annotations

import dataclasses
import math

from flatjax import parallel
from flatjax.errors import FlatjaxInputError, require_positive
from flatjax.train import reports
from flatjax.train.state import DEFAULT_PRNG_IMPL


@dataclasses.dataclass
class RunConfig:
  """The run's folder, length, batch sizes and intervals, and its seed."""
  output: str
  """the run folder"""
  seed: int = 0
  """data order, dropout and new heads"""
  epochs: float = 3.0
  """passes over the training data (fractions allowed)"""
  batch_size: int = 32
  """training examples per step"""
  grad_accum: int = 1
  """split each batch into K micro-batches, taken in turn: the same step (SAM's included)
  with one micro-batch's activations in memory"""
  eval_batch_size: int = 64
  """examples per evaluation batch"""
  eval_every: int | None = None
  """evaluate every N steps (null: at the end of every epoch)"""
  save_every: int | None = None
  """also checkpoint every N steps (checkpoints are saved at every evaluation)"""
  log_every: int = 20
  """steps between training-metric rows"""
  report_to: list[str] = dataclasses.field(default_factory=list)
  """also write the metrics as tensorboard event files and/or a csv table (metrics.jsonl is
  always written)"""
  patience: int | None = None
  """stop after N evaluations in a row without a new best dev score (null: never)"""
  keep_best: bool = True
  """save the best model on the validation metric in best/"""
  stop_after_steps: int | None = None
  """stop (checkpointed) after N steps, as if interrupted; continue with --resume"""
  mesh: str | None = None
  """device mesh 'data=N,model=M': the batch split over data, the big kernels over model
  (null: every device data parallel)"""
  progress: bool = True
  """show a progress bar"""
  prng_impl: str = DEFAULT_PRNG_IMPL
  """JAX's random-number implementation for dropout"""

  def validate(self) -> None:
    if not math.isfinite(self.epochs):
      raise FlatjaxInputError(f"run.epochs must be finite, got {self.epochs}")
    require_positive("run", self, "epochs", "batch_size", "grad_accum", "eval_batch_size",
                     "eval_every", "save_every", "log_every", "stop_after_steps", "patience")
    if self.batch_size % self.grad_accum:
      raise FlatjaxInputError(f"run.batch_size {self.batch_size} does not split into "
                              f"{self.grad_accum} equal micro-batches (run.grad_accum)")
    if self.seed < 0:
      raise FlatjaxInputError(f"run.seed must be non-negative, got {self.seed}")
    if self.mesh is not None:
      parallel.MeshConfig.parse(self.mesh)
    reports.check(self.report_to)
