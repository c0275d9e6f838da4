"""The model section of a run's configuration."""

from __future__ import annotations

import dataclasses

from flatjax.errors import FlatjaxInputError
from flatjax.models.bert import DTYPES


@dataclasses.dataclass
class ModelConfig:
  """The checkpoint a run starts from and the precision it computes in."""
  name: str = "minilm"
  """a model folder, a hub id, or 'minilm' (all-MiniLM-L6-v2 from its local package)"""
  dtype: str = "float32"
  """compute dtype, float32 or bfloat16 (params stay float32)"""

  def validate(self) -> None:
    if self.dtype not in DTYPES:
      raise FlatjaxInputError(f"model.dtype must be one of {', '.join(DTYPES)}, "
                              f"got {self.dtype!r}")
