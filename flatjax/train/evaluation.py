"""Evaluation: a model's task metrics on its validation split(s)."""

from __future__ import annotations

from typing import Any

import jax

from flatjax.data import pipeline
from flatjax.data.tasks import TaskSpec
from flatjax.models import pretrained
from flatjax.train import losses, steps


def predict(eval_step, params: Any, mask: Any, split: pipeline.SplitData) -> list:
  """The eval step's outputs on every batch of ``split`` in order, as
  ``split.score`` takes them: ``[(example_index, {name: logits}), ...]``."""
  outputs = []
  for batch in split.batcher.epoch(0):
    model_batch = {k: batch[k] for k in losses.MODEL_INPUTS}
    outputs.append((batch["example_index"],
                    jax.device_get(eval_step(params, mask, model_batch))))
  return outputs


def evaluate(eval_step, params: Any, mask: Any, split: pipeline.SplitData) -> dict[str, float]:
  """The task's metrics of ``params`` (under ``mask``) on one split.

  ``eval_step`` is ``jax.jit(steps.make_eval_step(module))``.
  """
  return split.score(predict(eval_step, params, mask, split))


def evaluate_model(model: str, task: TaskSpec, data: Any, *, max_length: int,
                   batch_size: int = 64, max_examples: int | None = None, seed: int = 0,
                   doc_stride: int = 128, dtype: str = "float32",
                   pad_to: str = "longest") -> dict[str, dict[str, float]]:
  """Loads ``model`` (a folder such as ``RUN/best``, or an int8 folder written by
  ``flatjax quantize``) and scores every eval split of ``task``."""
  from flatjax.quant import export, model as quant_model
  from flatjax.train.loop import DTYPES
  if export.is_quantized_model(model):
    loaded = export.load_quantized_model(model, task, dtype=DTYPES[dtype])
    step, params = quant_model.make_quantized_eval_step(
        loaded.module, loaded.qparams.config), loaded.qparams
  else:
    loaded = pretrained.from_pretrained(model, task, dtype=DTYPES[dtype])
    step, params = steps.make_eval_step(loaded.module), loaded.params
  tokenizer = pretrained.load_tokenizer(loaded.tokenizer_dir)
  splits = pipeline.load_eval_splits(task, tokenizer, data, batch_size=batch_size,
                                     max_length=max_length, seed=seed, max_examples=max_examples,
                                     doc_stride=doc_stride, pad_to=pad_to)
  eval_step = jax.jit(step)
  return {s.split: evaluate(eval_step, params, None, s) for s in splits}
