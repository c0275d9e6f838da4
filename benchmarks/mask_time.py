"""What a global magnitude mask costs, as a fraction of one train step.

One process loads MiniLM with RTE's 2-label head and builds:

* (a) the mask: ``jax.jit(lambda p: (m := magnitude_mask(p, s), apply_mask(p, m)))``,
  a global magnitude mask at ``--sparsity`` (default 0.6) over the default
  scope (``flatjax.sparsity.BERT_SCOPE``: every layer's Q, K, V,
  attention-output, intermediate and output kernels plus the pooler's),
  returned together with the pruned params;
* (b) one Adam train step (lr 2e-5, dropout on, dense) compiled as the
  training loop compiles it (``steps.jit_train_step(steps.make_train_step(...))``)
  on ``step_time.py``'s synthetic batch (default 32 x 128).

After compiling and warming both up, the repeats alternate one mask and one
step, each ``block_until_ready``, so load from other processes hits both alike.
It also times ``magnitude_mask`` un-jitted, as the IMP driver calls it once per
round: its first call in the process and a second call (IMP's next round,
``previous`` = the first mask, sparsity + 0.1). Prints seconds (median) and the
ratio mask / step; appends one JSON line to ``--output``.

    python benchmarks/mask_time.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_time import make_batch  # noqa: E402  (the same synthetic batch)

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                              "mask_time_cpu.jsonl")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--length", type=int, default=128, help="sequence length (padded)")
  p.add_argument("--repeats", type=int, default=5, help="timed masks and steps (alternating)")
  p.add_argument("--warmup", type=int, default=1, help="untimed masks and steps after compiling")
  p.add_argument("--sparsity", type=float, default=0.6)
  p.add_argument("--model", default="minilm")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--output", default=DEFAULT_OUTPUT,
                 help="append a JSON line with the results here ('' for none)")
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  import jax
  import numpy as np

  from flatjax import provenance
  from flatjax.data.tasks import get_task
  from flatjax.models import from_pretrained
  from flatjax.optim import OptimizerConfig, make_optimizer
  from flatjax.sparsity import apply_mask, magnitude_mask, sparsity
  from flatjax.sparsity.masks import mask_leaves
  from flatjax.train import losses, state as train_state, steps

  task = get_task("rte")
  pt = from_pretrained(args.model, task)
  params = pt.params

  # ---- eager, as the IMP driver calls it (first call in the process) --------
  t0 = time.perf_counter()
  eager_mask = jax.block_until_ready(magnitude_mask(params, args.sparsity))
  eager_first_s = time.perf_counter() - t0
  next_s = min(args.sparsity + 0.1, 1.0)
  t0 = time.perf_counter()
  jax.block_until_ready(magnitude_mask(params, next_s, previous=eager_mask))
  eager_next_s = time.perf_counter() - t0
  print(f"eager magnitude_mask: first call {eager_first_s:.3f}s; next IMP round "
        f"({args.sparsity:g} -> {next_s:g}, previous given) {eager_next_s:.3f}s", flush=True)
  n_scope = sum(m.size for _, m in mask_leaves(eager_mask))

  # ---- (a) jitted mask + apply ---------------------------------------------
  @jax.jit
  def mask_and_apply(p):
    m = magnitude_mask(p, args.sparsity)
    return m, apply_mask(p, m)

  t0 = time.perf_counter()
  jmask, _ = jax.block_until_ready(mask_and_apply(params))
  mask_compile_s = time.perf_counter() - t0
  same = all(np.array_equal(a, b) for (_, a), (_, b) in
             zip(mask_leaves(jmask), mask_leaves(eager_mask)))
  print(f"jitted mask: compiled and ran in {mask_compile_s:.2f}s; {n_scope} weights in scope, "
        f"sparsity {sparsity(jmask):.6f}; same as eager: {same}", flush=True)

  def mask_run():
    t0 = time.perf_counter()
    jax.block_until_ready(mask_and_apply(params))
    return time.perf_counter() - t0

  # ---- (b) Adam train step -------------------------------------------------
  batch = make_batch(np.random.RandomState(args.seed), args.batch_size, args.length,
                     pt.config.vocab_size)
  jbatch = {k: jax.device_put(v.astype(np.int32)) for k, v in batch.items()}
  jbatch["example_weight"] = jax.device_put(np.ones(args.batch_size, np.float32))
  total_steps = args.warmup + args.repeats + 10
  tx = make_optimizer(OptimizerConfig("adam", 2e-5), total_steps)
  step = steps.jit_train_step(steps.make_train_step(losses.make_loss_fn(pt.module, task), tx))
  # A copy: the step donates its state, the mask keeps using `params`.
  state = train_state.create(jax.tree.map(np.array, params), tx, args.seed)
  t0 = time.perf_counter()
  state, metrics = step(state, jbatch)
  jax.block_until_ready(metrics)
  step_compile_s = time.perf_counter() - t0
  print(f"train step: compiled and ran in {step_compile_s:.1f}s", flush=True)

  def step_run():
    nonlocal state
    t0 = time.perf_counter()
    state, m = step(state, jbatch)
    jax.block_until_ready((state, m))
    return time.perf_counter() - t0

  for _ in range(args.warmup):
    mask_run()
    step_run()
  mask_t, step_t = [], []
  for i in range(args.repeats):
    mask_t.append(mask_run())
    step_t.append(step_run())
    print(f"  {i + 1}/{args.repeats}: mask {mask_t[-1]:.3f}s  step {step_t[-1]:.3f}s",
          flush=True)

  mask_s, step_s = statistics.median(mask_t), statistics.median(step_t)
  ratio = mask_s / step_s
  cores = len(os.sched_getaffinity(0))
  print(f"\njax {jax.__version__} on {jax.devices()[0]}; {provenance.cpu()['model']}, "
        f"{cores} cores; "
        f"batch {args.batch_size} x {args.length}")
  print(f"jitted global magnitude mask ({args.sparsity:g}) + apply: {mask_s:.4f}s "
        f"(median, min {min(mask_t):.4f}s)")
  print(f"Adam train step:                               {step_s:.3f}s "
        f"(median, min {min(step_t):.3f}s)")
  print(f"ratio mask / step: {ratio:.2%}  (target < 10%)")
  print(f"eager magnitude_mask: first call {eager_first_s:.3f}s, next round {eager_next_s:.3f}s "
        f"({eager_first_s / step_s:.2%} / {eager_next_s / step_s:.2%} of a step)")
  if warning := provenance.contention():
    print(warning)
  if args.output:
    record = {"model": args.model, "task": task.name, "batch_size": args.batch_size,
              "length": args.length, "repeats": args.repeats, "warmup": args.warmup,
              "sparsity": args.sparsity, "weights_in_scope": n_scope,
              "mask_sparsity": sparsity(jmask), "jit_equals_eager": same,
              "mask_s": mask_s, "mask_min_s": min(mask_t), "mask_times_s": mask_t,
              "step_s": step_s, "step_min_s": min(step_t), "step_times_s": step_t,
              "ratio_mask_to_step": ratio,
              "eager_first_call_s": eager_first_s, "eager_next_round_s": eager_next_s,
              "mask_compile_s": mask_compile_s, "step_compile_s": step_compile_s,
              "device": str(jax.devices()[0])}
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    from flatjax import jsonl
    jsonl.append(args.output, provenance.benchmark_row("mask_time", args.output, record))
    print(f"wrote {args.output}")
  return ratio


if __name__ == "__main__":
  main()
