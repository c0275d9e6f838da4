"""Time flatjax's full train step against transformers' PyTorch BERT.

Both sides run the same model (MiniLM weights by default, 2 labels), the same
batch (random token ids, a realistic padded attention mask, sentence-pair
token types), dropout on and AdamW (lr 2e-5, weight decay 0.01):

* flatjax: ``jax.jit(make_train_step(make_loss_fn(module, task), tx),
  donate_argnums=0)`` with the registry's ``adamw``;
* PyTorch: ``BertForSequenceClassification`` in ``train()`` mode,
  ``zero_grad`` + forward + backward + ``torch.optim.AdamW.step``.

By default the whole process runs with glibc's malloc set up as flatjax's CLI
sets it (``flatjax.runtime.tune_malloc``), so both frameworks run under it;
``--malloc default`` leaves glibc's defaults for both.

After warming both up, the repeats alternate one flatjax step and one PyTorch
step, so load from other processes hits both sides alike. Prints the devices,
a table (median, mean, min per step) and the ratio flatjax/PyTorch of the
medians; ``--output FILE`` appends the results as one JSON line.

    python benchmarks/step_time.py --repeats 20 --output step_time.jsonl
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--length", type=int, default=128, help="sequence length (padded)")
  p.add_argument("--repeats", type=int, default=20, help="timed steps per framework")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps per framework first")
  p.add_argument("--model", default="minilm", help="flatjax.models.from_pretrained name or folder")
  p.add_argument("--threads", type=int, default=None,
                 help="CPU cores for both frameworks (pins the process to the first N "
                      "cores and sets torch's intra-op threads to N; XLA's CPU thread "
                      "pool follows the affinity). Default: all cores, each "
                      "framework's own default.")
  p.add_argument("--prng-impl", default=None,
                 help="flatjax dropout PRNG (threefry2x32, threefry4x32, philox4x32, rbg, "
                      "...); default: flatjax.train.state.DEFAULT_PRNG_IMPL")
  p.add_argument("--no-dropout", action="store_true",
                 help="diagnostic only: dropout off on BOTH sides")
  p.add_argument("--malloc", choices=("flatjax", "default"), default="flatjax",
                 help="'flatjax' (default): glibc malloc set up as flatjax's CLI does at "
                      "start-up (flatjax.runtime.tune_malloc: freed memory is kept and "
                      "reused, so XLA's per-step scratch buffer is not page-faulted in "
                      "afresh every step); the whole process, so PyTorch runs under the "
                      "same setting. 'default': glibc's defaults for both.")
  p.add_argument("--xla-scheduler", choices=("flatjax", "default", "memory"),
                 default="flatjax",
                 help="'flatjax' (default) compiles the flatjax step as its training loop "
                      "does (flatjax.runtime.train_compiler_options: on CPU the "
                      "memory-optimised scheduler); 'default' with XLA's default "
                      "options; 'memory' with compiler_options={'xla_cpu_scheduler_type': "
                      "'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'} (CPU only)")
  p.add_argument("--xla-flags", default="",
                 help="extra XLA_FLAGS for the flatjax side, e.g. "
                      "--xla_cpu_prefer_vector_width=512 (recorded in the results)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--output", default=None, help="append a JSON line with the results here")
  return p.parse_args(argv)


def make_batch(rs, batch_size, length, vocab_size):
  """Random ids; each row keeps [CLS] a [SEP] b [SEP] of a random real length
  between length/4 and length, then padding (id 0, mask 0, type 0)."""
  import numpy as np
  ids = rs.randint(1000, min(vocab_size, 30000), (batch_size, length)).astype(np.int64)
  mask = np.zeros((batch_size, length), np.int64)
  types = np.zeros((batch_size, length), np.int64)
  for i in range(batch_size):
    n = int(rs.randint(max(length // 4, 4), length + 1))
    first = int(rs.randint(2, n - 1))
    mask[i, :n] = 1
    types[i, first:n] = 1
    ids[i, 0], ids[i, first - 1], ids[i, n - 1] = 101, 102, 102
    ids[i, n:] = 0
  labels = rs.randint(0, 2, batch_size).astype(np.int64)
  return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}


def summarize(times):
  return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times),
          "min_s": min(times), "stdev_s": statistics.stdev(times) if len(times) > 1 else 0.0,
          "n": len(times)}


def main(argv=None):
  args = parse_args(argv)
  tuned = False
  if args.malloc == "flatjax":
    from flatjax.runtime import tune_malloc  # before jax or torch start their threads
    tuned = tune_malloc()
  if args.xla_flags:
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {args.xla_flags}".strip()
  if args.threads is not None:
    # Before jax/torch start their thread pools: both see only these cores.
    cores = sorted(os.sched_getaffinity(0))[: args.threads]
    os.sched_setaffinity(0, cores)

  import jax
  import numpy as np
  import torch
  import transformers

  transformers.logging.set_verbosity_error()  # no load report for the new head

  from flatjax import provenance
  from flatjax.data.tasks import get_task
  from flatjax.models import from_pretrained
  from flatjax.optim import OptimizerConfig, make_optimizer
  from flatjax.runtime import train_compiler_options
  from flatjax.train import losses, state as train_state, steps

  if args.threads is not None:
    torch.set_num_threads(args.threads)

  task = get_task("sst2")  # any 2-label classification task
  pt = from_pretrained(args.model, task)
  rs = np.random.RandomState(args.seed)
  batch = make_batch(rs, args.batch_size, args.length, pt.config.vocab_size)

  # ---- flatjax -------------------------------------------------------------
  total_steps = args.warmup + args.repeats + 10
  tx = make_optimizer(OptimizerConfig("adamw", 2e-5, weight_decay=0.01), total_steps)
  kw = {} if args.prng_impl is None else {"prng_impl": args.prng_impl}
  state = train_state.create(pt.params, tx, args.seed, **kw)
  prng_impl = state.prng_impl
  loss_fn = losses.make_loss_fn(pt.module, task, deterministic=args.no_dropout)
  copts = {}
  if args.xla_scheduler == "flatjax":
    copts = train_compiler_options()
  elif args.xla_scheduler == "memory" and jax.default_backend() == "cpu":
    copts["xla_cpu_scheduler_type"] = "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"
  jstep = jax.jit(steps.make_train_step(loss_fn, tx), donate_argnums=0,
                  compiler_options=copts or None)
  jbatch = {k: jax.device_put(v.astype(np.int32)) for k, v in batch.items()}
  jbatch["example_weight"] = jax.device_put(np.ones(args.batch_size, np.float32))
  jax_device = str(jax.devices()[0])

  def jax_step():
    nonlocal state
    t0, c0 = time.perf_counter(), time.process_time()
    state, metrics = jstep(state, jbatch)
    jax.block_until_ready((state, metrics))
    return time.perf_counter() - t0, time.process_time() - c0

  # ---- PyTorch -------------------------------------------------------------
  from transformers import BertForSequenceClassification
  torch.manual_seed(args.seed)
  tdev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  tkw = {}
  if args.no_dropout:
    tkw = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
  tmodel = BertForSequenceClassification.from_pretrained(
      str(pt.source_dir), num_labels=2, **tkw).to(tdev)
  tmodel.train()
  topt = torch.optim.AdamW(tmodel.parameters(), lr=2e-5, weight_decay=0.01)
  tbatch = {k: torch.from_numpy(v).to(tdev) for k, v in batch.items()}
  sync = torch.cuda.synchronize if tdev.type == "cuda" else (lambda: None)
  attn = getattr(tmodel.config, "_attn_implementation", "?")

  def torch_step():
    t0, c0 = time.perf_counter(), time.process_time()
    topt.zero_grad(set_to_none=True)
    out = tmodel(**tbatch)
    out.loss.backward()
    topt.step()
    sync()
    return time.perf_counter() - t0, time.process_time() - c0

  print(f"flatjax: jax {jax.__version__} on {jax_device} "
        f"(backend {jax.default_backend()}), prng {prng_impl}")
  print(f"PyTorch: torch {torch.__version__} on {tdev} "
        f"(intra-op threads {torch.get_num_threads()}, attention {attn}), "
        f"transformers {transformers.__version__}")
  print(f"malloc: {args.malloc} (tune_malloc applied: {tuned}); "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; jit compiler_options={copts}")
  print(f"CPU cores available: {len(os.sched_getaffinity(0))}; batch {args.batch_size} x "
        f"{args.length}, {int(batch['attention_mask'].sum())} real tokens of "
        f"{batch['attention_mask'].size}; dropout {'OFF' if args.no_dropout else 'on'}",
        flush=True)

  t0 = time.perf_counter()
  jax_step()
  compile_s = time.perf_counter() - t0
  for _ in range(args.warmup):
    jax_step()
    torch_step()
  jt, tt, jc, tc = [], [], [], []
  for i in range(args.repeats):
    for times, cpus, fn in ((jt, jc, jax_step), (tt, tc, torch_step)):
      wall, cpu = fn()
      times.append(wall)
      cpus.append(cpu)
    print(f"  step {i + 1:3d}/{args.repeats}: flatjax {jt[-1]:.3f}s  PyTorch {tt[-1]:.3f}s"
          f"   (process CPU time {jc[-1]:.2f}s / {tc[-1]:.2f}s)", flush=True)

  js, ts = summarize(jt), summarize(tt)
  js["cpu_median_s"], ts["cpu_median_s"] = statistics.median(jc), statistics.median(tc)
  ratio = js["median_s"] / ts["median_s"]
  print()
  print(f"{'wall/step':10s} {'median':>9s} {'mean':>9s} {'min':>9s} {'stdev':>9s} "
        f"{'CPU-s med':>10s}")
  for name, s in (("flatjax", js), ("PyTorch", ts)):
    print(f"{name:10s} {s['median_s']:8.3f}s {s['mean_s']:8.3f}s {s['min_s']:8.3f}s "
          f"{s['stdev_s']:8.3f}s {s['cpu_median_s']:9.3f}s")
  print(f"ratio flatjax/PyTorch (median wall): {ratio:.3f}   "
        f"(mean: {js['mean_s'] / ts['mean_s']:.3f}, min: {js['min_s'] / ts['min_s']:.3f}, "
        f"CPU time: {js['cpu_median_s'] / ts['cpu_median_s']:.3f}); "
        f"flatjax first call (compile) {compile_s:.1f}s")
  temp_mb = None
  try:  # XLA's per-step scratch buffer: on CPU it is mmapped (and faulted in) every step
    temp_mb = jstep.lower(state, jbatch).compile().memory_analysis().temp_size_in_bytes / 2**20
    print(f"flatjax step temp buffer: {temp_mb:.0f} MiB")
  except Exception:  # not every backend reports it
    pass
  if warning := provenance.contention():
    print(warning)

  if args.output:
    record = {
        "model": args.model, "batch_size": args.batch_size, "length": args.length,
        "repeats": args.repeats, "warmup": args.warmup, "dropout": not args.no_dropout,
        "jax_device": jax_device,
        "jax_backend": jax.default_backend(), "prng_impl": prng_impl,
        "torch_device": str(tdev), "torch_threads": torch.get_num_threads(),
        "torch_attention": attn, "threads_arg": args.threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "jit_compiler_options": copts,
        "malloc": args.malloc, "malloc_tuned": tuned,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "flatjax": js, "pytorch": ts, "ratio_median": ratio,
        "ratio_mean": js["mean_s"] / ts["mean_s"], "ratio_min": js["min_s"] / ts["min_s"],
        "ratio_cpu_time": js["cpu_median_s"] / ts["cpu_median_s"],
        "flatjax_temp_mib": temp_mb, "flatjax_compile_s": compile_s,
    }
    from flatjax import jsonl
    jsonl.append(args.output, provenance.benchmark_row("step_time", args.output, record))
    print(f"wrote {args.output}")
  return ratio


if __name__ == "__main__":
  main()
