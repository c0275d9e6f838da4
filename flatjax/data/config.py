"""The data section of a run's configuration: which task, where its examples
are, and how they become batches."""

from __future__ import annotations

import dataclasses

from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError, require_positive

PAD_TO = ("longest", "max_length")


@dataclasses.dataclass
class DataConfig:
  """Where a run's examples come from and how they are cut and padded."""
  task: str
  """cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, squad or a registered task"""
  source: str | None = None
  """a hub dataset name, a GLUE TSV folder, a folder of {split}.jsonl/csv/parquet files,
  or a SQuAD json (null: the Hugging Face hub)"""
  eval_source: str | None = None
  """the evaluation data, if not in source"""
  max_length: int | None = None
  """tokens per sequence (null: the task's, 128; SQuAD 384)"""
  doc_stride: int = 128
  """SQuAD: overlap of a long context's windows"""
  pad_to: str = "longest"
  """pad each batch to its longest sequence (rounded up to a multiple of 8) or always to
  max_length"""
  max_train_examples: int | None = None
  """use only the first N training examples (after a seeded shuffle)"""
  max_eval_examples: int | None = None
  """evaluate on the first N examples of each split"""

  def __post_init__(self):
    if self.max_length is None:  # resolved once, so that the saved config says it
      self.max_length = get_task(self.task).default_max_length

  def validate(self) -> None:
    get_task(self.task)
    require_positive("data", self, "max_length", "doc_stride", "max_train_examples",
             "max_eval_examples")
    if self.pad_to not in PAD_TO:
      raise FlatjaxInputError(f"data.pad_to must be one of {', '.join(PAD_TO)}, "
                              f"got {self.pad_to!r}")

  def eval_data(self) -> str | None:
    """Where the evaluation splits are read from."""
    return self.source if self.eval_source is None else self.eval_source

