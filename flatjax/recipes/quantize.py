"""``flatjax quantize RUN_DIR``: a fine-tuned model's dev metrics in float32 and in int8.

The paper's Table 8: PyTorch's post-training dynamic int8 quantization of the
Linear layers (here :data:`flatjax.quant.int8.CONFIGS` ``"dynamic"``, the same
arithmetic) applied to the fine-tuned model, scored on the task's dev split(s)
beside the float32 model. For each scheme asked for, the output folder
(``RUN/int8`` by default) gets the int8 model folder ``SCHEME/`` (int8 file,
``config.json``, tokenizer: ``flatjax eval --model OUT/SCHEME`` scores it
again) and ``quantize.json`` gets its metrics, how many dev predictions
(argmax of each logits output) it keeps from the float model, how far its
logits move, its file size against the float32 file, and both models' dev
predictions example by example (``float32_predictions``, each scheme's
``predictions``).

With dynamic activation scales, an example's int8 logits depend a little on
the other rows of its batch, padding included, as in PyTorch: the eval batch
size and padding are part of the result and recorded with it. Side effects
(files, progress) live here and in the CLI only.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from flatjax import files, provenance
from flatjax.console import say
from flatjax.data import pipeline
from flatjax.data.config import PAD_TO
from flatjax.errors import FlatjaxInputError, require_positive
from flatjax.models import pretrained
from flatjax.quant import export, int8, model as quant_model
from flatjax.train import evaluation, runs, steps
from flatjax.train.trainer import check_rerun_folder

@dataclasses.dataclass
class QuantizeConfig:
  """A ``flatjax quantize`` run (the flags map 1:1)."""
  run: str
  """a flatjax train run folder (its best/ model) or a model folder"""
  output: str | None = None
  """results folder (default: RUN/int8)"""
  schemes: tuple[str, ...] = (int8.DEFAULT,)
  """quantization recipes (--scheme, repeatable; dynamic: PyTorch's quantize_dynamic on every
  Linear)"""
  task: str | None = None
  """the task (default: the run's)"""
  data: str | None = None
  """the evaluation data (default: the run's eval data, else its data)"""
  batch_size: int = 32
  """eval batch size (32); dynamic int8 scales depend on the batch"""
  max_length: int | None = None
  """tokens per sequence (default: the run's, else the task's)"""
  max_eval_examples: int | None = None
  """evaluate on the first N examples of each split"""
  doc_stride: int | None = None
  """SQuAD window overlap (default: the run's, else 128)"""
  pad_to: str = "longest"
  """pad each batch to its longest sequence (rounded up to a multiple of 8) or always to
  max_length"""
  seed: int = 0
  """seeds the max_eval_examples subset"""
  save: bool = True
  """write the int8 model folders (false: score only)"""
  progress: bool = True
  """show progress messages"""

  def validate(self) -> None:
    if not self.schemes:
      raise FlatjaxInputError("give at least one quantization scheme")
    for name in self.schemes:
      int8.get_config(name)
    if len(set(self.schemes)) != len(self.schemes):
      raise FlatjaxInputError(f"a scheme is given twice: {list(self.schemes)}")
    require_positive(None, self, "batch_size", "max_length", "max_eval_examples",
                     "doc_stride")
    if self.seed < 0:
      raise FlatjaxInputError(f"seed must be non-negative, got {self.seed}")
    if self.pad_to not in PAD_TO:
      raise FlatjaxInputError(f"pad-to must be one of {', '.join(PAD_TO)}, got {self.pad_to!r}")


def compare_outputs(reference: list, other: list) -> dict[str, Any]:
  """How far ``other``'s logits are from ``reference``'s, over the real rows.

  ``reference`` and ``other`` are the ``(example index, outputs)`` batches of
  ``evaluation.predict`` on the same batches. For each logits output: the largest and mean
  absolute difference and, when it has more than one column (classes, or token positions for
  SQuAD), the share of rows whose argmax is the same. Batches are compared one by one:
  padded to their longest sequence, per-token outputs differ in width from batch to batch.
  """
  result: dict[str, Any] = {}
  for key in reference[0][1]:
    rows = count = agree = 0
    largest = total = 0.0
    columns = False
    for (idx, ref), (other_idx, out) in zip(reference, other, strict=True):
      a = np.asarray(ref[key])[idx >= 0].astype(np.float64)
      b = np.asarray(out[key])[other_idx >= 0].astype(np.float64)
      if a.shape != b.shape:
        raise ValueError(f"{key}: outputs of shape {b.shape} against {a.shape} in one batch")
      diff = np.abs(a - b)
      rows += len(a)
      count += diff.size
      total += float(diff.sum())
      largest = max(largest, float(diff.max(initial=0.0)))
      if a.ndim == 2 and a.shape[1] > 1:
        columns = True
        agree += int(np.sum(a.argmax(-1) == b.argmax(-1)))
    entry = {"rows": rows, "max_abs_diff": largest,
             "mean_abs_diff": total / count if count else 0.0}
    if columns:
      entry["argmax_agreement"] = agree / rows if rows else 0.0
    result[key] = entry
  return result


def run_quantize(config: QuantizeConfig) -> dict:
  """Scores the float and int8 models; returns (and writes) the results."""
  config.validate()
  run = runs.resolve_finetuned(config.run, config.task)
  settings = run.settings
  data = config.data or settings.get("eval_data") or run.data
  if data is None:
    raise FlatjaxInputError(f"{config.run} does not record its data; pass --data")
  max_length = config.max_length or settings.get("max_length") or run.task.default_max_length
  doc_stride = config.doc_stride or settings.get("doc_stride") or 128
  out = Path(config.output) if config.output else (run.run_dir or run.model_dir) / "int8"
  check_rerun_folder(out, "quantize.json", "quantization results")
  note = say if config.progress else (lambda msg: None)

  model = pretrained.from_pretrained(run.model_dir, run.task)
  tokenizer = pretrained.load_tokenizer(model.tokenizer_dir)
  splits = pipeline.load_eval_splits(run.task, tokenizer, data, batch_size=config.batch_size,
                                     max_length=max_length, seed=config.seed,
                                     max_examples=config.max_eval_examples, pad_to=config.pad_to,
                                     doc_stride=doc_stride)
  out.mkdir(parents=True, exist_ok=True)
  provenance.write_run_json(out, config, {"model": run.model_dir, "data": data})
  t0 = time.time()
  float_step = jax.jit(steps.make_eval_step(model.module))
  float_outputs = {s.split: evaluation.predict(float_step, model.params, None, s) for s in splits}
  results: dict[str, Any] = {
      "run": config.run, "model": str(run.model_dir), "task": run.task.name,
      "optimizer": run.optimizer,
      "eval": {"data": str(data), "splits": {s.split: s.num_examples for s in splits},
               "batch_size": config.batch_size, "max_length": max_length,
               "pad_to": config.pad_to},
      "config": {**dataclasses.asdict(config), "schemes": list(config.schemes)},
      "float32": {s.split: s.score(float_outputs[s.split]) for s in splits},
      "float32_predictions": evaluation.per_example(splits, float_outputs),
      "int8": {}}
  note(f"float32: {json.dumps(results['float32'])}")

  for name in config.schemes:
    scheme = int8.get_config(name)
    qparams = quant_model.quantize_params(model.params, scheme)
    step = jax.jit(quant_model.make_quantized_eval_step(model.module, scheme))
    entry: dict[str, Any] = {"config": scheme.to_dict(), "metrics": {}, "vs_float32": {}}
    outputs = {s.split: evaluation.predict(step, qparams, None, s) for s in splits}
    for s in splits:
      entry["metrics"][s.split] = s.score(outputs[s.split])
      entry["vs_float32"][s.split] = compare_outputs(float_outputs[s.split], outputs[s.split])
    entry["predictions"] = evaluation.per_example(splits, outputs)
    meta = {"source": str(run.model_dir), "task": run.task.name}
    entry["sizes"] = export.file_sizes(qparams, meta)
    if config.save:
      folder = export.save_quantized_model(out / name, qparams, model.config, run.task,
                                           model.tokenizer_dir, meta)
      entry["model_dir"] = str(folder)
    results["int8"][name] = entry
    note(f"int8 {name}: {json.dumps(entry['metrics'])}, file "
         f"{entry['sizes']['int8_bytes'] / 2**20:.1f} MiB "
         f"({entry['sizes']['ratio']:.1%} of float32)")
  results["seconds"] = round(time.time() - t0, 1)
  files.write_json(out / "quantize.json", results)
  return results
