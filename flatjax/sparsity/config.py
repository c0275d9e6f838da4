"""The pruning section of a fine-tuning run's configuration: train under a
given mask, or learn one while training."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flatjax.errors import FlatjaxInputError, require_positive
from flatjax.sparsity import masks as masks_lib, methods
from flatjax.sparsity.pruner import Pruner


@dataclasses.dataclass
class PruningConfig:
  """A fixed mask (``mask``), or a method learning one on the cubic schedule
  (``method``); neither: a dense run."""
  mask: str | None = None
  """train under this mask file: pruned weights are 0 and stay 0"""
  method: str | None = None
  """learn a mask while training: movement (Sanh et al. 2020), magnitude (gradual
  magnitude pruning, Zhu & Gupta 2017), random, or any registered method"""
  sparsity: float = 0.6
  """final sparsity of the prunable weights"""
  begin: float = 0.1
  """fraction of the run before pruning starts"""
  end: float = 0.7
  """fraction of the run at which the schedule reaches the sparsity"""
  every: int = 1
  """steps between mask updates"""
  granularity: str = "per_tensor"
  """top-k within each tensor (per_tensor, Sanh et al.), over the whole scope (global), or
  N of every M inputs of each kernel at the end (N:M, e.g. 2:4 at sparsity 0.5)"""
  scope: str = "bert"
  """prunable params: a scope name (bert: Chen et al.'s encoder kernels and the pooler)
  or a regex on param paths"""

  def validate(self) -> None:
    if self.mask is not None and not Path(self.mask).is_file():
      raise FlatjaxInputError(f"mask file {self.mask} does not exist")
    if self.method is None:
      return
    methods.get_scoring(self.method)  # a registered method
    if self.mask is not None:
      raise FlatjaxInputError("pruning.mask and pruning.method exclude each other")
    if not 0.0 <= self.begin < self.end <= 1.0:
      raise FlatjaxInputError("need 0 <= pruning begin < pruning end <= 1 (fractions of "
                              f"the run), got {self.begin}, {self.end}")
    require_positive("pruning", self, "every")
    self.pruner(total_steps=1000)  # checks sparsity, granularity, scope names

  def pruner(self, total_steps: int) -> Pruner | None:
    """The pruner a run of ``total_steps`` trains with (None without a method)."""
    if self.method is None:
      return None
    begin, end = self._steps(total_steps)
    return methods.make_pruner(
        self.method, sparsity=self.sparsity, begin_step=begin, end_step=end,
        scope=masks_lib.resolve_scope(self.scope), granularity=self.granularity,
        update_every=self.every)

  def end_step(self, total_steps: int) -> int:
    """The first step whose mask has the final sparsity (0 without a method)."""
    return 0 if self.method is None else self._steps(total_steps)[1]

  def _steps(self, total_steps: int) -> tuple[int, int]:
    """The schedule's (begin, end) steps; end > begin even for very short runs."""
    begin = int(self.begin * total_steps)
    return begin, max(begin + 1, int(round(self.end * total_steps)))
