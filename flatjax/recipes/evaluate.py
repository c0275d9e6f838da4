"""``flatjax eval``: a saved model's (fp32 folder or int8 folder) metrics on its task."""

from __future__ import annotations

from typing import Any

import jax

from flatjax.data import pipeline
from flatjax.data.tasks import TaskSpec
from flatjax.models import pretrained
from flatjax.models.bert import DTYPES
from flatjax.quant import export, model as quant_model
from flatjax.train import steps
from flatjax.train.evaluation import evaluate


def evaluate_model(model: str, task: TaskSpec, data: Any, *, max_length: int,
                   batch_size: int = 64, max_examples: int | None = None, seed: int = 0,
                   doc_stride: int = 128, dtype: str = "float32",
                   pad_to: str = "longest") -> dict[str, dict[str, float]]:
  """Loads ``model`` (a folder such as ``RUN/best``, or an int8 folder written by
  ``flatjax quantize``) and scores every eval split of ``task``."""
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
