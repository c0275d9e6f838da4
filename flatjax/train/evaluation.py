"""Evaluation: a model's task metrics on its validation split(s)."""

from __future__ import annotations

import json
from pathlib import Path
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
  """:func:`split_scores`, and the splits' :func:`per_example` predictions."""
  outputs = {split.split: predict(eval_step, params, mask, split) for split in splits}
  row = {f"{split.split}/{k}": v
         for split in splits for k, v in split.score(outputs[split.split]).items()}
  return row, per_example(splits, outputs)


def per_example(splits: list[pipeline.SplitData], outputs: dict) -> dict:
  """``{split: SplitData.per_example}`` of each split's eval outputs (``outputs``: by
  split name), for the splits that have them (classification and SQuAD)."""
  found = {s.split: s.per_example(outputs[s.split]) for s in splits}
  return {split: value for split, value in found.items() if value is not None}


def saved_predictions(model_dir: str | Path, split: str) -> dict | None:
  """The ``{"labels", "predictions"}`` on ``split`` a saved model folder kept in its
  :data:`PREDICTIONS_FILE`; None where it kept none."""
  path = Path(model_dir) / PREDICTIONS_FILE
  return json.loads(path.read_text()).get(split) if path.is_file() else None
