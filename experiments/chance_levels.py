"""The dev score of a prediction that reads nothing, per task and seed.

For the GLUE tasks, always the dev set's most frequent label. For SQuAD, always the first k
words of the context, with the k (1 to 30) that scores the best F1 on the training questions
the compare run of that seed trains on (a position prior, learnt without the model), and a
margin of two standard errors of its mean per-question F1 on dev.

A fine-tuned model within that margin has learned nothing at the experiment's scale, so
`python -m paper` marks comparisons between such models "not testable" instead of calling them
held or not. The dev sets are the ones experiments/compare_tasks.sh evaluates on: all of
RTE, MRPC and SST-2; a seeded random 500 (EVAL_EXAMPLES) of the hub-schema subsets and 200
(SQUAD_EVAL_EXAMPLES) SQuAD dev questions, chosen by the run's seed as flatjax's loader
chooses them.

    python experiments/chance_levels.py > experiments/results/chance/chance.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from flatjax.data import glue, squad
from flatjax.data.tasks import get_task
from flatjax.metrics import exact_match_score, f1_score, task_metrics

SOURCES = {"rte": "glue/RTE", "mrpc": "glue/MRPC", "sst2": "glue/SST-2",
           "qnli": "glue_subsets/qnli", "mnli": "glue_subsets/mnli", "qqp": "glue_subsets/qqp"}
SUBSETS = ("qnli", "mnli", "qqp")
#: The SQuAD position prior's candidate lengths (words).
FIRST_WORDS = range(1, 31)


def first_words(example: squad.SquadExample, k: int) -> str:
  return " ".join(example["context"].split()[:k])


def _per_question(examples, k: int, score) -> np.ndarray:
  return np.array([max(score(first_words(e, k), g) for g in e["answers"]["text"])
                   for e in examples])


def squad_position_prior(train: list, dev: list) -> dict:
  """The first-k-words answer, k fitted on ``train``, scored on ``dev`` (percent)."""
  k = max(FIRST_WORDS, key=lambda n: _per_question(train, n, f1_score).mean())
  f1 = _per_question(dev, k, f1_score)
  return {"examples": len(dev), "rule": f"the context's first {k} words", "k": k,
          "exact_match": 100.0 * _per_question(dev, k, exact_match_score).mean(),
          "f1": 100.0 * f1.mean(), "margin": 200.0 * f1.std() / np.sqrt(len(dev))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default="../shared/data")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  parser.add_argument("--eval-examples", type=int, default=500)
  parser.add_argument("--squad-train-examples", type=int, default=400)
  parser.add_argument("--squad-eval-examples", type=int, default=200)
  args = parser.parse_args()
  out = {"command": "python experiments/chance_levels.py > experiments/results/chance/chance.json",
         "rule": "always the dev set's most frequent label; SQuAD: always the context's first "
                 "k words, k fitted on the training subset", "tasks": {}}
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
  out["tasks"]["squad"] = {
      str(seed): squad_position_prior(
          squad.load_squad(f"{args.data}/squad", "train", args.squad_train_examples, seed),
          squad.load_squad(f"{args.data}/squad", "validation", args.squad_eval_examples, seed))
      for seed in args.seeds}
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
