"""The score of always predicting the dev set's most frequent label, per task and seed.

A fine-tuned model within a point of this has learned nothing at the experiment's scale, so
`flatjax report` marks comparisons between such models "not testable" instead of calling them
held or not. The dev sets are the ones experiments/compare_tasks.sh evaluates on: all of
RTE, MRPC and SST-2; a seeded random 500 (EVAL_EXAMPLES) of the hub-schema subsets, chosen by the run's
seed as flatjax's loader chooses them.

    python experiments/chance_levels.py > experiments/results/chance/chance.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from flatjax.data import glue
from flatjax.data.tasks import get_task
from flatjax.metrics import task_metrics

SOURCES = {"rte": "glue/RTE", "mrpc": "glue/MRPC", "sst2": "glue/SST-2",
           "qnli": "glue_subsets/qnli", "mnli": "glue_subsets/mnli", "qqp": "glue_subsets/qqp"}
SUBSETS = ("qnli", "mnli", "qqp")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default="../shared/data")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  parser.add_argument("--eval-examples", type=int, default=500)
  args = parser.parse_args()
  out = {"command": "python experiments/chance_levels.py > experiments/results/chance/chance.json",
         "rule": "always the dev set's most frequent label", "tasks": {}}
  for name, folder in SOURCES.items():
    task = get_task(name)
    out["tasks"][name] = {}
    for seed in args.seeds:
      limit = args.eval_examples if name in SUBSETS else None
      examples = glue.load_glue(task, f"{args.data}/{folder}", "validation", max_examples=limit,
                                seed=seed)
      labels = np.asarray(examples.labels)
      majority = int(np.bincount(labels).argmax())
      logits = np.zeros((len(labels), task.num_labels), np.float32)
      logits[:, majority] = 1.0
      out["tasks"][name][str(seed)] = {"examples": len(labels), "label": majority,
                                       **task_metrics(task, logits, labels)}
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
