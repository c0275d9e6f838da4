"""The tasks: every per-task fact flatjax uses, in one :class:`TaskSpec` each.

A spec names the text fields (hub schema), the label set, the metrics reported
and the one metric used to pick the best checkpoint, which is the metric the
paper's tables show (Na et al. 2022, Sec. 3; MNLI: matched accuracy, CoLA:
Matthews correlation, STS-B: Pearson, SQuAD: F1); where its data sits (the
hub dataset, the classic GLUE folder and TSV columns); the paper's sequence
length; IMP's reference sparsity; and CoFi's distillation weight. A new task is
one :func:`register` call (docs/extending.md).
"""

from __future__ import annotations

import dataclasses

from flatjax.errors import FlatjaxInputError


@dataclasses.dataclass(frozen=True)
class TsvLayout:
  """Where a task's texts and label sit in its original GLUE TSV files."""
  text_columns: tuple[str | int, ...]   # header names, or indices when there is no header
  label_column: str | int
  has_header: bool = True
  num_columns: int | None = None        # fixed column count when there is no header


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
  default_max_length: int = 128       # the paper's sequence length (SQuAD: 384)
  hub_name: str = "nyu-mll/glue"      # its dataset on the Hugging Face hub (config: name)
  glue_folder: str | None = None      # its folder in the classic glue_data/ layout
  tsv: TsvLayout | None = None        # its columns in those TSV files
  # Chen et al.'s (2020) winning-ticket sparsity for bert-base, at which the paper
  # reports its IMP tables (Na et al. 2022, Tables 1, 5, 6); None: none known.
  reference_sparsity: float | None = None
  # CoFi's layer-distillation weight (the prediction weight is 1 minus it);
  # None: flatjax.train.distill.DistillConfig's defaults.
  distill_layer_weight: float | None = None

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


def _glue(name: str, text_keys: tuple[str, ...], label_names: tuple[str, ...],
          metrics: tuple[str, ...], main_metric: str, folder: str, tsv: TsvLayout,
          reference_sparsity: float, **kwargs) -> TaskSpec:
  return TaskSpec(name, text_keys, label_names, metrics, main_metric, glue_folder=folder,
                  tsv=tsv, reference_sparsity=reference_sparsity, **kwargs)


# Na et al. (2022) distil with layer weight 0.9 on SST-2 and QNLI, 0.7 on QQP and MNLI.
TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    # CoLA's TSV: source, label, original label (often empty), sentence; no header.
    _glue("cola", ("sentence",), ("unacceptable", "acceptable"),
          ("matthews_correlation", "accuracy"), "matthews_correlation", "CoLA",
          TsvLayout((3,), 1, has_header=False, num_columns=4), 0.5),
    _glue("sst2", ("sentence",), ("negative", "positive"), ("accuracy",), "accuracy", "SST-2",
          TsvLayout(("sentence",), "label"), 0.6, distill_layer_weight=0.9),
    _glue("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
          ("accuracy", "f1"), "accuracy", "MRPC",
          TsvLayout(("#1 String", "#2 String"), "Quality"), 0.5),
    _glue("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("accuracy", "f1"),
          "accuracy", "QQP", TsvLayout(("question1", "question2"), "is_duplicate"), 0.9,
          distill_layer_weight=0.7),
    _glue("stsb", ("sentence1", "sentence2"), (), ("pearson", "spearman"), "pearson", "STS-B",
          TsvLayout(("sentence1", "sentence2"), "score"), 0.5, kind="regression"),
    _glue("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
          ("accuracy",), "accuracy", "MNLI", TsvLayout(("sentence1", "sentence2"), "gold_label"),
          0.7, eval_splits=("validation_matched", "validation_mismatched"),
          distill_layer_weight=0.7),
    _glue("qnli", ("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",),
          "accuracy", "QNLI", TsvLayout(("question", "sentence"), "label"), 0.7,
          distill_layer_weight=0.9),
    _glue("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",),
          "accuracy", "RTE", TsvLayout(("sentence1", "sentence2"), "label"), 0.6),
    TaskSpec("squad", ("question", "context"), (), ("exact_match", "f1"), "f1", kind="span",
             default_max_length=384, hub_name="rajpurkar/squad", reference_sparsity=0.4),
)}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "squad_v1": "squad",
            "squad1.1": "squad"}


def register(spec: TaskSpec) -> TaskSpec:
  """Adds (or replaces) a task: every command then takes ``--task NAME``."""
  if spec.kind not in ("classification", "regression", "span"):
    raise FlatjaxInputError(f"task kind must be classification, regression or span, "
                            f"got {spec.kind!r}")
  if spec.main_metric not in spec.metrics:
    raise FlatjaxInputError(f"{spec.name}: main metric {spec.main_metric!r} is not one of "
                            f"its metrics {spec.metrics}")
  TASKS[spec.name] = spec
  return spec


def get_task(name: str) -> TaskSpec:
  """Looks a task up by name, case-insensitively (``SST-2`` and ``sst2`` both work)."""
  key = name.strip().lower()
  key = _ALIASES.get(key, key)
  if key not in TASKS:
    raise FlatjaxInputError(
        f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
  return TASKS[key]
