"""The GLUE tasks and SQuAD as the paper evaluates them.

Each :class:`TaskSpec` names the text fields (hub schema), the label set, the
metrics reported and the one metric used to pick the best checkpoint, which is
the metric the paper's tables show (Na et al. 2022, Sec. 3; MNLI: matched
accuracy, CoLA: Matthews correlation, STS-B: Pearson, SQuAD: F1).
"""

from __future__ import annotations

import dataclasses

from flatjax.errors import FlatjaxInputError


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  name: str
  text_keys: tuple[str, ...]          # hub field names: one or two texts
  label_names: tuple[str, ...]        # index = label id; () for regression / span tasks
  metrics: tuple[str, ...]
  main_metric: str
  train_split: str = "train"
  eval_splits: tuple[str, ...] = ("validation",)
  kind: str = "classification"        # "classification" | "regression" | "span"

  @property
  def num_labels(self) -> int:
    if self.kind == "regression":
      return 1
    if self.kind == "span":
      return 2
    return len(self.label_names)

  @property
  def is_regression(self) -> bool:
    return self.kind == "regression"

  @property
  def default_max_length(self) -> int:
    """The paper's sequence length: 128 tokens for GLUE, 384 for SQuAD."""
    return 384 if self.kind == "span" else 128


TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec("cola", ("sentence",), ("unacceptable", "acceptable"),
                     ("matthews_correlation", "accuracy"), "matthews_correlation"),
    "sst2": TaskSpec("sst2", ("sentence",), ("negative", "positive"),
                     ("accuracy",), "accuracy"),
    "mrpc": TaskSpec("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
                     ("accuracy", "f1"), "accuracy"),
    "qqp": TaskSpec("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"),
                    ("accuracy", "f1"), "accuracy"),
    "stsb": TaskSpec("stsb", ("sentence1", "sentence2"), (),
                     ("pearson", "spearman"), "pearson", kind="regression"),
    "mnli": TaskSpec("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
                     ("accuracy",), "accuracy",
                     eval_splits=("validation_matched", "validation_mismatched")),
    "qnli": TaskSpec("qnli", ("question", "sentence"), ("entailment", "not_entailment"),
                     ("accuracy",), "accuracy"),
    "rte": TaskSpec("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"),
                    ("accuracy",), "accuracy"),
    "squad": TaskSpec("squad", ("question", "context"), (), ("exact_match", "f1"), "f1",
                      kind="span"),
}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "squad_v1": "squad",
            "squad1.1": "squad"}


def get_task(name: str) -> TaskSpec:
  """Looks a task up by name, case-insensitively (``SST-2`` and ``sst2`` both work)."""
  key = name.strip().lower()
  key = _ALIASES.get(key, key)
  if key not in TASKS:
    raise FlatjaxInputError(
        f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
  return TASKS[key]
