"""Where flatjax's train step (or forward) spends its time: a ``jax.profiler`` trace, summed.

Runs the same step as ``step_time.py`` (MiniLM, batch 32 x 128, AdamW, dropout
on, flatjax's CLI malloc and XLA settings), or with ``--step eval`` /
``--step eval-int8`` the float32 or int8 forward, traces a few calls, and prints:

* the step's time inside XLA's executor under the profiler, and how much of it
  has at least one XLA op running (the rest is dispatch between ops). Tracing
  slows the step and varies run to run (up to ~30% on the train step): compare
  speeds with ``step_time.py`` and ``infer_time.py``, and use this for shares;
* op time by kind (``xla_trace.op_kind``): matmuls (``ynn_fusion``/``dot``), dropout
  (the fusions under a ``Dropout`` scope: drawing the masks, mostly), and every other
  fusion;
* the slowest single ops.

Op times are summed over XLA's threads, so ops that ran side by side both count.

    python benchmarks/step_profile.py --steps 3
"""

from __future__ import annotations

import argparse
import tempfile

import xla_trace


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=3, help="traced steps (after 2 untraced)")
  p.add_argument("--top", type=int, default=15, help="slowest ops to list")
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--length", type=int, default=128, help="sequence length (padded)")
  p.add_argument("--malloc", choices=("flatjax", "default"), default="flatjax")
  p.add_argument("--no-dropout", action="store_true")
  p.add_argument("--step", choices=("train", "eval", "eval-int8"), default="train",
                 help="the train step (default), the eval forward (dropout off), or the "
                      "int8 eval forward (PyTorch's dynamic recipe)")
  return p.parse_args(argv)


def _make_step(args, pt, task):
  """(state, step) with ``step(state, batch) -> (state, outputs)``."""
  import jax
  from flatjax.optim import OptimizerConfig, make_optimizer
  from flatjax.quant import model as quant_model
  from flatjax.train import losses, state as train_state, steps

  if args.step == "train":
    tx = make_optimizer(OptimizerConfig("adamw", 2e-5, weight_decay=0.01), 100)
    return train_state.create(pt.params, tx, 0), steps.jit_train_step(steps.make_train_step(
        losses.make_loss_fn(pt.module, task, deterministic=args.no_dropout), tx))
  if args.step == "eval":
    params, forward = pt.params, steps.make_eval_step(pt.module)
  else:
    params = quant_model.quantize_params(pt.params, "dynamic")
    forward = quant_model.make_quantized_eval_step(pt.module, "dynamic")
  return params, _Forward(jax.jit(lambda p, batch: forward(p, None, batch)))


class _Forward:
  """A jitted forward called as a step: the params come back as they went in
  (returning them from the jit would time a copy of them)."""

  def __init__(self, jitted):
    self.lower = jitted.lower
    self._jitted = jitted

  def __call__(self, params, batch):
    return params, self._jitted(params, batch)


def main(argv=None):
  args = parse_args(argv)
  if args.malloc == "flatjax":
    from flatjax.runtime import tune_malloc
    tune_malloc()
  import jax
  import numpy as np

  from step_time import make_batch
  from flatjax.data.tasks import get_task
  from flatjax.models import from_pretrained

  task = get_task("sst2")
  pt = from_pretrained("minilm", task)
  batch = make_batch(np.random.RandomState(0), args.batch_size, args.length,
                     pt.config.vocab_size)
  jb = {k: jax.device_put(v.astype(np.int32)) for k, v in batch.items()}
  jb["example_weight"] = jax.device_put(np.ones(args.batch_size, np.float32))
  state, step = _make_step(args, pt, task)
  ops = xla_trace.hlo_ops(step.lower(state, jb).compile().as_text())
  for _ in range(2):
    state, out = step(state, jb)
  jax.block_until_ready((state, out))

  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d):
      for _ in range(args.steps):
        state, out = step(state, jb)
        jax.block_until_ready((state, out))
    data = jax.profiler.ProfileData.from_file(xla_trace.trace_file(d))

  events, _ = xla_trace.device_ops(data, ops)
  runs = [(ev.start_ns, ev.start_ns + ev.duration_ns) for plane in data.planes
          for line in plane.lines if line.name.startswith("tf_XLAPjRtCpuClient")
          for ev in line.events if ev.name.startswith("ThunkExecutor::Execute")]
  if not runs or not events:
    raise SystemExit("the trace has no XLA:CPU op events (a backend other than CPU?)")

  # Execute events can nest (a while loop's body runs its own executor): count
  # the time covered by any of them.
  wall = xla_trace.covered_ns(runs) * 1e-6 / args.steps
  summary = xla_trace.summarize(events, ops, args.steps, top=args.top)
  busy = summary["busy_ms"]
  print(f"step (XLA execution) {wall:.0f} ms; at least one op running "
        f"{busy:.0f} ms ({busy / wall:.0%}); dispatch and gaps {wall - busy:.0f} ms")
  total = sum(summary["kind_ms"].values())
  print(f"op time summed over threads: {total:.0f} ms")
  for kind, t in summary["kind_ms"].items():
    print(f"  {kind:14s} {t:7.0f} ms  {t / total:5.1%}")
  print(f"slowest {args.top} ops (ms per step):")
  for op in summary["top"]:
    print(f"  {op['ms']:7.1f}  {op['name']:32s} {op['scope'][:90]}")

if __name__ == "__main__":
  main()
