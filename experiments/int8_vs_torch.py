"""flatjax's int8 model against PyTorch's ``quantize_dynamic`` on a run's real dev set.

``python -m experiments.int8_vs_torch RUN [--batch-size 32] [--max-length N] [--output DIR]``
(a config step ``[int8-vs-torch, RUN, ...]``)

Loads the run's model (``RUN/best``) into flatjax and into transformers' PyTorch
BERT, quantizes both with PyTorch's recipe (flatjax: ``int8.CONFIGS["dynamic"]``;
PyTorch: ``torch.ao.quantization.quantize_dynamic(model, {nn.Linear},
dtype=torch.qint8)``), feeds both the same padded dev batches (flatjax's
batcher, as ``flatjax quantize`` uses it) and prints JSON (written to
``DIR/torch.json`` with ``--output``): how many predicted labels agree, how far the
logits are apart, each side's accuracy, and PyTorch's predicted labels in dev order.
Needs torch (the test extras), hence an experiment script, not part of the library.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

try:
  import torch
  import transformers
except ImportError:
  sys.exit("int8_vs_torch needs PyTorch: bash scripts/setup.sh test installs it")

from flatjax.data import pipeline
from flatjax.models import pretrained
from flatjax.quant import model as quant_model
from flatjax.train import losses, runs


def main(argv: list[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("run")
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--max-length", type=int, default=None)
  p.add_argument("--output", type=Path, help="write DIR/torch.json too")
  args = p.parse_args(argv)
  run = runs.resolve_finetuned(args.run)
  settings = run.settings
  max_length = args.max_length or settings["max_length"]
  data = settings.get("eval_data") or run.data
  model = pretrained.from_pretrained(run.model_dir, run.task)
  tokenizer = pretrained.load_tokenizer(model.tokenizer_dir)
  split = pipeline.load_split(run.task, tokenizer, data, "validation",
                              batch_size=args.batch_size, max_length=max_length, shuffle=False)
  step = jax.jit(quant_model.make_quantized_eval_step(model.module, "dynamic"))
  qparams = quant_model.quantize_params(model.params, "dynamic")
  torch_model = transformers.BertForSequenceClassification.from_pretrained(
      str(run.model_dir)).eval()
  torch_int8 = torch.ao.quantization.quantize_dynamic(torch_model, {torch.nn.Linear},
                                                      dtype=torch.qint8)
  ours, theirs, theirs_float, labels, order = [], [], [], [], []
  for batch in split.batcher.epoch(0):
    real = batch["example_index"] >= 0
    order.append(np.asarray(batch["example_index"])[real])
    inputs = {k: batch[k] for k in losses.MODEL_INPUTS}
    ours.append(np.asarray(jax.device_get(step(qparams, None, inputs))["logits"])[real])
    pt = {k: torch.from_numpy(np.asarray(v, np.int64)) for k, v in inputs.items()}
    with torch.no_grad():
      theirs.append(torch_int8(**pt).logits.numpy()[real])
      theirs_float.append(torch_model(**pt).logits.numpy()[real])
    labels.append(np.asarray(batch["labels"])[real])
  by_index = np.argsort(np.concatenate(order), kind="stable")  # dev order
  ours, theirs, theirs_float, labels = (np.concatenate(a)[by_index]
                                        for a in (ours, theirs, theirs_float, labels))
  diff = np.abs(ours - theirs)
  margin = np.abs(theirs_float[:, 1] - theirs_float[:, 0]) if theirs.shape[1] == 2 else None
  found = {
      "run": args.run, "task": run.task.name, "examples": int(len(labels)),
      "batch_size": args.batch_size, "max_length": max_length, "torch": torch.__version__,
      "quantized_engine": torch.backends.quantized.engine,
      "label_agreement": float(np.mean(ours.argmax(-1) == theirs.argmax(-1))),
      "labels_differing": int(np.sum(ours.argmax(-1) != theirs.argmax(-1))),
      "max_abs_logit_diff": float(diff.max()), "median_abs_logit_diff": float(np.median(diff)),
      "median_float_margin": None if margin is None else float(np.median(margin)),
      "flatjax_int8_accuracy": 100 * float(np.mean(ours.argmax(-1) == labels)),
      "torch_int8_accuracy": 100 * float(np.mean(theirs.argmax(-1) == labels)),
      "torch_float_accuracy": 100 * float(np.mean(theirs_float.argmax(-1) == labels)),
      "torch_int8_predictions": pipeline.digits(theirs.argmax(-1)),
      "torch_float_predictions": pipeline.digits(theirs_float.argmax(-1)),
  }
  text = json.dumps(found, indent=2)
  print(text)
  if args.output:
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "torch.json").write_text(text + "\n")
  return found


if __name__ == "__main__":
  torch.set_num_threads(1)
  main()
