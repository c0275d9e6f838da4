"""Evaluation: a model's task metrics on its validation split(s)."""

from __future__ import annotations

from typing import Any

import jax

from flatjax.data import pipeline
from flatjax.models.bert import MODEL_INPUTS

#: A saved model's dev predictions (``{split: SplitData.per_example}``), in its folder.
PREDICTIONS_FILE = "predictions.json"


def predict(eval_step, params: Any, mask: Any, split: pipeline.SplitData) -> list:
  """The eval step's outputs on every batch of ``split`` in order, as
  ``split.score`` takes them: ``[(example_index, {name: logits}), ...]``."""
  outputs = []
  for batch in split.batcher.epoch(0):
    model_batch = {k: batch[k] for k in MODEL_INPUTS}
    outputs.append((batch["example_index"],
                    jax.device_get(eval_step(params, mask, model_batch))))
  return outputs


def evaluate(eval_step, params: Any, mask: Any, split: pipeline.SplitData) -> dict[str, float]:
  """The task's metrics of ``params`` (under ``mask``) on one split.

  ``eval_step`` is ``jax.jit(steps.make_eval_step(module))``.
  """
  return split.score(predict(eval_step, params, mask, split))


def split_scores(eval_step, params, mask, splits: list[pipeline.SplitData]) -> dict:
  """``{"split/metric": value}`` of ``params`` on every evaluation split.
  ``mask`` is the eval step's second argument: a pruning mask, or the CoFi
  driver's gates."""
  return scores_and_predictions(eval_step, params, mask, splits)[0]


def scores_and_predictions(eval_step, params, mask,
                           splits: list[pipeline.SplitData]) -> tuple[dict, dict]:
  """:func:`split_scores`, and ``{split: SplitData.per_example}`` for the splits
  that have per-example predictions (classification tasks)."""
  row, predictions = {}, {}
  for split in splits:
    outputs = predict(eval_step, params, mask, split)
    row.update({f"{split.split}/{k}": v for k, v in split.score(outputs).items()})
    per_example = split.per_example(outputs)
    if per_example is not None:
      predictions[split.split] = per_example
  return row, predictions
