"""What a flat optimizer's train step costs, as a ratio to Adam's.

One process builds flatjax's jitted train step (``make_train_step``, dropout on,
the same MiniLM weights and batch) for each optimizer:

* ``adam``, and flatjax's ``sam``, ``asam``, ``gsam``, ``looksam`` (k = 5), and the
  cheap variants ``msam`` (Momentum-SAM), ``samon`` (SAM-ON) and ``latesam``
  (late-phase SAM) from the registry, all on Adam. ``latesam`` is timed in its Adam
  phase (before SAM starts); its cost over a run, ``start * latesam + (1 - start) *
  sam`` with the registry's start (0.8), is printed beside it;
* ``optax.contrib.sam`` in opaque mode with the same Adam and rho, the
  drop-in SAM that optax ships.

Each step is compiled as the training loop compiles it (``steps.jit_train_step``).

After compiling and warming each up, the repeats go round-robin: one round is
``--round`` consecutive steps of one optimizer, then the next optimizer's round,
so load from other processes hits all of them alike, and LookSAM's cycle of one
exact and k - 1 cheap steps is timed whole (``--round`` must be a multiple of
k). Prints seconds per step (median over rounds) and the ratio to adam;
``--output FILE`` appends one JSON line.

    python benchmarks/sam_overhead.py --repeats 5 --output benchmarks/results/sam_overhead_cpu.jsonl
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_time import make_batch  # noqa: E402  (the same synthetic batch)

OPTIMIZERS = ("adam", "sam", "asam", "gsam", "looksam", "msam", "samon", "latesam",
              "optax.contrib.sam")
#: latesam's default start (flatjax.optim.registry.LateSAMSettings), for its cost over a run.
LATE_START = 0.8


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--length", type=int, default=128, help="sequence length (padded)")
  p.add_argument("--repeats", type=int, default=5, help="timed rounds per optimizer")
  p.add_argument("--round", type=int, default=5, help="steps per round (a multiple of k)")
  p.add_argument("--k", type=int, default=5, help="looksam's period")
  p.add_argument("--rho", type=float, default=0.05)
  p.add_argument("--model", default="minilm")
  p.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                 help=f"comma-separated subset of {', '.join(OPTIMIZERS)}")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--output", default=None, help="append a JSON line with the results here")
  args = p.parse_args(argv)
  if args.round % args.k:
    p.error(f"--round ({args.round}) must be a multiple of --k ({args.k})")
  unknown = set(args.optimizers.split(",")) - set(OPTIMIZERS)
  if unknown:
    p.error(f"unknown optimizers: {', '.join(sorted(unknown))}")
  return args


def build_tx(name, args, total_steps):
  import optax
  from flatjax.optim import OptimizerConfig, lr_schedule, make_optimizer
  config = OptimizerConfig(name if name != "optax.contrib.sam" else "adam", 2e-5)
  if name == "optax.contrib.sam":
    adv = optax.chain(optax.contrib.normalize(), optax.sgd(args.rho))
    return optax.contrib.sam(optax.adam(lr_schedule(config, total_steps)), adv,
                             sync_period=2, opaque_mode=True)
  extra = {"sam": {"rho": args.rho}, "gsam": {"rho": args.rho}, "msam": {"rho": args.rho},
           "looksam": {"rho": args.rho, "k": args.k},
           "latesam": {"rho": args.rho, "start": 0.999}}.get(name, {})   # its Adam phase
  return make_optimizer(OptimizerConfig(name, 2e-5, settings=extra), total_steps)


def main(argv=None):
  args = parse_args(argv)
  import jax
  import numpy as np

  from flatjax import provenance
  from flatjax.data.tasks import get_task
  from flatjax.models import from_pretrained
  from flatjax.train import losses, state as train_state, steps

  task = get_task("sst2")
  pt = from_pretrained(args.model, task)
  batch = make_batch(np.random.RandomState(args.seed), args.batch_size, args.length,
                     pt.config.vocab_size)
  jbatch = {k: jax.device_put(v.astype(np.int32)) for k, v in batch.items()}
  jbatch["example_weight"] = jax.device_put(np.ones(args.batch_size, np.float32))
  loss_fn = losses.make_loss_fn(pt.module, task)
  names = args.optimizers.split(",")
  total_steps = (args.repeats + 2) * args.round + 10

  runners, compile_s = {}, {}
  for name in names:
    tx = build_tx(name, args, total_steps)
    step = steps.jit_train_step(steps.make_train_step(loss_fn, tx))
    state = train_state.create(jax.tree.map(np.array, pt.params), tx, args.seed)
    t0 = time.perf_counter()
    state, metrics = step(state, jbatch)
    jax.block_until_ready(metrics)
    compile_s[name] = time.perf_counter() - t0
    runners[name] = [step, state]
    print(f"{name}: compiled and ran one step in {compile_s[name]:.1f}s", flush=True)

  def run_round(name):
    step, state = runners[name]
    t0 = time.perf_counter()
    for _ in range(args.round):
      state, metrics = step(state, jbatch)
    jax.block_until_ready((state, metrics))
    runners[name][1] = state
    return (time.perf_counter() - t0) / args.round

  for name in names:  # warm-up round (finishes LookSAM's first cycle too)
    run_round(name)
  times = {name: [] for name in names}
  for i in range(args.repeats):
    for name in names:
      times[name].append(run_round(name))
    print(f"  round {i + 1}/{args.repeats}: " +
          "  ".join(f"{n} {times[n][-1]:.2f}s" for n in names), flush=True)

  med = {n: statistics.median(t) for n, t in times.items()}
  base = med.get("adam")
  print(f"\njax {jax.__version__} on {jax.devices()[0]}; batch {args.batch_size} x "
        f"{args.length}; rounds of {args.round} steps; rho {args.rho}; looksam k {args.k}")
  print(f"{'optimizer':20s} {'s/step':>8s} {'min':>8s} {'ratio to adam':>14s}")
  for n in names:
    ratio = f"{med[n] / base:14.3f}" if base else f"{'-':>14s}"
    print(f"{n:20s} {med[n]:8.3f} {min(times[n]):8.3f} {ratio}")
  late_run = None
  if base and "latesam" in med and "sam" in med:
    late_run = (LATE_START * med["latesam"] + (1 - LATE_START) * med["sam"]) / base
    print(f"{'latesam over a run':20s} {'':8s} {'':8s} {late_run:14.3f}  "
          f"(Adam phase {LATE_START:.0%} of the steps, then SAM)")
  if "sam" in med and "optax.contrib.sam" in med:
    print(f"flatjax sam / optax.contrib.sam: {med['sam'] / med['optax.contrib.sam']:.3f}")
  if warning := provenance.contention():
    print(warning)
  if args.output:
    record = {"model": args.model, "batch_size": args.batch_size, "length": args.length,
              "repeats": args.repeats, "round": args.round, "k": args.k, "rho": args.rho,
              "device": str(jax.devices()[0]), "seconds_per_step": med,
              "min_seconds_per_step": {n: min(t) for n, t in times.items()},
              "ratio_to_adam": {n: med[n] / base for n in names} if base else None,
              "latesam_run_ratio_to_adam": late_run, "latesam_start": LATE_START,
              "compile_s": compile_s}
    from flatjax import jsonl
    jsonl.append(args.output, provenance.benchmark_row("sam_overhead", args.output, record))
    print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
