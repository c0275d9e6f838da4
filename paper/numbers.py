"""The paper's numbers (Na, Mehta, Strubell 2022; bert-base, dev, mean of 3 seeds).

Read from the paper's Tables 2, 3, 5, 6 and 8; `python -m paper` sets flatjax's
measurements beside them. Keys are flatjax task names.
"""

from __future__ import annotations

# Table 5, dev, at the reference sparsities (MRPC and QQP accuracy, SQuAD F1).
TABLE5 = {
    "full": {
        "adam": {"mnli": 84.7, "qqp": 91.0, "stsb": 89.0, "qnli": 91.5, "mrpc": 85.5,
                 "rte": 67.6, "sst2": 92.7, "cola": 58.1, "squad": 88.5},
        "sam": {"mnli": 85.3, "qqp": 91.1, "stsb": 89.4, "qnli": 91.3, "mrpc": 87.0,
                "rte": 67.0, "sst2": 93.1, "cola": 59.5, "squad": 89.2},
    },
    "imp": {
        "adam": {"mnli": 82.6, "qqp": 85.0, "stsb": 88.3, "qnli": 88.6, "mrpc": 84.2,
                 "rte": 63.7, "sst2": 91.7, "cola": 56.4, "squad": 86.9},
        "sam": {"mnli": 83.5, "qqp": 84.9, "stsb": 88.9, "qnli": 89.6, "mrpc": 85.8,
                "rte": 71.8, "sst2": 93.2, "cola": 56.1, "squad": 87.8},
    },
    "std": {
        "adam": {"mnli": 82.7, "qqp": 88.1, "stsb": 89.2, "qnli": 89.5, "mrpc": 85.5,
                 "rte": 65.3, "sst2": 91.1, "cola": 54.2, "squad": 86.3},
        "sam": {"mnli": 83.3, "qqp": 89.6, "stsb": 89.6, "qnli": 90.0, "mrpc": 85.3,
                "rte": 68.2, "sst2": 92.1, "cola": 56.8, "squad": 87.1},
    },
}

# Table 6, dev, mask source x final optimizer: {task: {mask: (adam, sam)}}.
TABLE6 = {
    "rte": {"random": (54.9, 55.4), "adam": (63.7, 61.7), "sam": (70.2, 71.8)},
    "mrpc": {"random": (70.8, 70.1), "adam": (84.2, 85.3), "sam": (85.3, 85.7)},
    "sst2": {"random": (82.8, 83.3), "adam": (91.9, 92.7), "sam": (92.4, 92.9)},
    "qnli": {"random": (61.7, 61.5), "adam": (89.0, 89.5), "sam": (89.1, 89.6)},
}

# Table 8, dev, full model -> int8 dynamic quantization: {task: (metric, adam, sam)},
# each optimizer's entry (float32, int8).
TABLE8 = {
    "mnli": ("accuracy", (84.42, 78.24), (84.68, 83.47)),
    "qqp": ("f1", (87.98, 85.35), (88.20, 86.85)),
    "stsb": ("pearson", (89.06, 86.54), (89.39, 87.16)),
    "qnli": ("accuracy", (91.49, 89.05), (91.33, 89.83)),
    "mrpc": ("f1", (89.57, 86.81), (91.24, 89.37)),
    "rte": ("accuracy", (67.63, 56.80), (67.87, 65.70)),
    "sst2": ("accuracy", (92.70, 91.17), (93.08, 92.39)),
    "cola": ("matthews_correlation", (60.47, 55.99), (59.09, 54.88)),
    "squad": ("f1", (89.20, 80.13), (89.20, 84.92)),
}

# Table 2, CoFi at 95% sparsity, dev accuracy, teacher -> pruned: {task: (adam, sam)}.
TABLE2 = {
    "sst2": ((92.7, 90.2), (93.1, 91.3)),
    "qnli": ((91.5, 85.9), (91.3, 86.9)),
    "qqp": ((91.0, 90.0), (91.1, 90.1)),
    "mnli": ((84.7, 80.2), (85.3, 80.6)),
}

# Table 3, epsilon-sharpness (x100, epsilon 1e-3) of the full models: {task: (adam, sam)}.
TABLE3 = {
    "mnli": (5.0, 2.6), "qqp": (6.5, 1.9), "stsb": (11.8, 4.5), "qnli": (6.6, 3.5),
    "mrpc": (6.1, 7.0), "rte": (11.9, 4.3), "sst2": (4.5, 2.2), "cola": (9.5, 6.8),
}

TASK_NAMES = {"mnli": "MNLI", "qqp": "QQP", "stsb": "STS-B", "qnli": "QNLI", "mrpc": "MRPC",
              "rte": "RTE", "sst2": "SST-2", "cola": "CoLA", "squad": "SQuAD"}
TASK_ORDER = tuple(TASK_NAMES)


def base_task(name: str) -> str:
  """A results folder's task without its variant: ``"qnli_rho0.02"`` (a run with another SAM
  radius) -> ``"qnli"``."""
  return name.partition("_")[0]


def task_label(name: str) -> str:
  """The task's name as the paper writes it, with a variant's setting:
  ``"qnli_rho0.02"`` (a run with another SAM radius) -> ``"QNLI (SAM ρ 0.02)"``."""
  task, _, variant = name.partition("_")
  label = TASK_NAMES.get(task, task)
  if variant.startswith("rho"):
    return f"{label} (SAM ρ {variant[3:]})"
  return f"{label} ({variant})" if variant else label


def task_rank(name: str) -> tuple[int, str]:
  """Sort key: the paper's task order, a task's variants after it."""
  task = base_task(name)
  return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), name)
