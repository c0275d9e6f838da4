"""Inference forward time: flatjax against PyTorch and onnxruntime, float32 and int8.

One process loads one sequence-classification model (MiniLM by default, dropout off) into
every runtime it can:

* ``flatjax``: ``jax.jit`` of the eval step (``flatjax.train.steps.make_eval_step``), what
  every evaluation in flatjax runs; ``flatjax-int8``: the int8 eval step
  (``flatjax.quant.model.make_quantized_eval_step``, PyTorch's dynamic recipe);
* ``torch``: transformers' PyTorch BERT, eager, ``torch.no_grad``; ``torch-int8``:
  ``torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)``;
* ``onnx`` and ``onnx-int8``: ``flatjax export``'s graphs (:mod:`flatjax.export`) in
  onnxruntime (CPU, default session options);
* ``flatjax-xla`` and ``flatjax-int8-xla``: flatjax's two steps traced inside
  ``flatjax.kernels.xla_only()``, on XLA's own ops without flatjax's native CPU kernels
  (the same bits, :mod:`flatjax.kernels`); the kernels' gain side by side.

For each shape (batch x length, ``--shapes``; the batch of ``step_time.make_batch``: rows
of random real lengths, then padding) every runtime is compiled or warmed up, then the
timed calls go round-robin, one call of each runtime per round, so load from other
processes hits all alike. Each timed call follows an untimed one of the same
runtime, as in an evaluation loop: onnxruntime's and OpenMP's worker threads spin
for a while after a call and slow whichever runtime comes next, and a runtime
whose threads went to sleep pays to wake them. Prints median seconds per call and the
ratios the issue asks about; ``--output FILE`` appends one JSON line with the machine and
the revision.

    python benchmarks/infer_time.py --repeats 10 --output benchmarks/results/infer_time_cpu.jsonl
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_time import make_batch  # noqa: E402  (the same synthetic batch)

RUNTIMES = ("flatjax", "flatjax-int8", "torch", "torch-int8", "onnx", "onnx-int8", "flatjax-xla",
            "flatjax-int8-xla")
#: (numerator, denominator) pairs printed as ratios.
RATIOS = (("flatjax", "torch"), ("flatjax-int8", "flatjax"), ("flatjax-int8", "torch-int8"),
          ("onnx", "torch"), ("onnx-int8", "torch-int8"), ("flatjax", "flatjax-xla"),
          ("flatjax-int8", "flatjax-int8-xla"))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", default="minilm", help="a model folder or minilm")
  p.add_argument("--shapes", default="1x64,1x128,32x64,32x128",
                 help="comma-separated BATCHxLENGTH")
  p.add_argument("--repeats", type=int, default=10, help="timed rounds per shape")
  p.add_argument("--runtimes", default=",".join(RUNTIMES),
                 help=f"comma-separated subset of {', '.join(RUNTIMES)}")
  p.add_argument("--threads", type=int, default=None,
                 help="PyTorch's and onnxruntime's intra-op threads (default: every core)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--malloc", choices=("flatjax", "default"), default="flatjax",
                 help="'flatjax' (default): glibc malloc set up as flatjax's CLI does "
                      "(flatjax.runtime.tune_malloc); 'default': glibc's defaults")
  p.add_argument("--output", default=None, help="append a JSON line with the results here")
  args = p.parse_args(argv)
  unknown = set(args.runtimes.split(",")) - set(RUNTIMES)
  if unknown:
    p.error(f"unknown runtimes: {', '.join(sorted(unknown))}")
  try:
    args.shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
  except ValueError:
    p.error(f"--shapes must be BATCHxLENGTH,..., got {args.shapes!r}")
  return args


def _flatjax_runners(pt, names):
  import jax
  import jax.numpy as jnp
  from flatjax import kernels
  from flatjax.quant import model as quant_model
  from flatjax.train import steps

  def runner(params, make_step, xla_only):
    step = jax.jit(make_step(pt.module))
    if not xla_only:
      return lambda b: jax.block_until_ready(step(params, None, b))

    def run(b):  # traced (on first call per shape) without the native kernels
      with kernels.xla_only():
        return jax.block_until_ready(step(params, None, b))
    return run

  out = {}
  qparams = (quant_model.quantize_params(pt.params, "dynamic")
             if {"flatjax-int8", "flatjax-int8-xla"} & set(names) else None)
  int8_step = lambda m: quant_model.make_quantized_eval_step(m, "dynamic")  # noqa: E731
  for suffix, xla_only in (("", False), ("-xla", True)):
    if "flatjax" + suffix in names:
      out["flatjax" + suffix] = runner(pt.params, steps.make_eval_step, xla_only)
    if "flatjax-int8" + suffix in names:
      out["flatjax-int8" + suffix] = runner(qparams, int8_step, xla_only)
  as_jax = lambda batch: {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}  # noqa: E731
  return out, as_jax


def _torch_runners(model_dir, names, threads):
  import torch
  import transformers
  if threads:
    torch.set_num_threads(threads)
  model = transformers.BertForSequenceClassification.from_pretrained(str(model_dir)).eval()
  out = {}
  if "torch" in names:
    out["torch"] = model
  if "torch-int8" in names:
    out["torch-int8"] = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                               dtype=torch.qint8)

  def call(m):
    def run(batch):
      with torch.no_grad():
        return m(**batch).logits
    return run
  as_torch = lambda batch: {k: torch.from_numpy(v) for k, v in batch.items()}  # noqa: E731
  return {k: call(m) for k, m in out.items()}, as_torch


def _onnx_runners(pt, task, names, threads):
  import onnxruntime as ort
  from flatjax.export import to_onnx
  from flatjax.quant import model as quant_model
  options = ort.SessionOptions()
  if threads:
    options.intra_op_num_threads = threads
  out = {}
  for name, params in (("onnx", pt.params), ("onnx-int8", None)):
    if name not in names:
      continue
    if params is None:
      params = quant_model.quantize_params(pt.params, "dynamic")
    session = ort.InferenceSession(to_onnx(params, pt.config, task).SerializeToString(),
                                   options, providers=["CPUExecutionProvider"])
    out[name] = (lambda s: lambda b: s.run(None, b))(session)
  return out, (lambda batch: batch)


def main(argv=None):
  args = parse_args(argv)
  if args.malloc == "flatjax":
    from flatjax.runtime import tune_malloc
    tune_malloc()
  import numpy as np

  from flatjax import kernels, provenance
  from flatjax.data.tasks import get_task
  from flatjax.models import from_pretrained

  names = args.runtimes.split(",")
  task = get_task("sst2")
  pt = from_pretrained(args.model, task)
  runners = {}
  flatjax_runs, as_jax = _flatjax_runners(pt, names)
  runners.update({k: (f, as_jax) for k, f in flatjax_runs.items()})
  if {"torch", "torch-int8"} & set(names):
    torch_runs, as_torch = _torch_runners(pt.source_dir, names, args.threads)
    runners.update({k: (f, as_torch) for k, f in torch_runs.items()})
  if {"onnx", "onnx-int8"} & set(names):
    onnx_runs, as_np = _onnx_runners(pt, task, names, args.threads)
    runners.update({k: (f, as_np) for k, f in onnx_runs.items()})
  names = [n for n in RUNTIMES if n in runners]

  results = {}
  for batch_size, length in args.shapes:
    raw = make_batch(np.random.RandomState(args.seed), batch_size, length, pt.config.vocab_size)
    raw = {k: raw[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    inputs = {n: conv(raw) for n, (_, conv) in runners.items()}
    first = {}
    for n in names:  # compile / warm up
      t0 = time.perf_counter()
      runners[n][0](inputs[n])
      first[n] = time.perf_counter() - t0
      runners[n][0](inputs[n])
    times = {n: [] for n in names}
    for _ in range(args.repeats):
      for n in names:
        runners[n][0](inputs[n])  # untimed: the switch from another runtime
        t0 = time.perf_counter()
        runners[n][0](inputs[n])
        times[n].append(time.perf_counter() - t0)
    med = {n: statistics.median(t) for n, t in times.items()}
    shape = f"{batch_size}x{length}"
    results[shape] = {"seconds": med, "min_seconds": {n: min(t) for n, t in times.items()},
                      "first_call_s": first,
                      "ratios": {f"{a}/{b}": med[a] / med[b] for a, b in RATIOS
                                 if a in med and b in med}}
    print(f"\n{shape}: " + "  ".join(f"{n} {med[n] * 1e3:.1f}ms" for n in names))
    print("  " + "  ".join(f"{k} {v:.2f}" for k, v in results[shape]["ratios"].items()),
          flush=True)

  if warning := provenance.contention():
    print(warning)
  if args.output:
    from flatjax import jsonl
    jsonl.append(args.output, provenance.benchmark_row("infer_time", args.output, {
        "model": args.model, "repeats": args.repeats, "threads": args.threads,
        "malloc": args.malloc, "flatjax_kernels": kernels.unavailable_reason() or "native",
        "results": results}))
    print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
