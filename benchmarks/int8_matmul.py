"""The matrix products under an int8 forward: XLA:CPU's integer dot against
float32 and against PyTorch's quantized linear, at MiniLM's shapes.

flatjax's int8 dense layer (:func:`flatjax.quant.int8.int8_matmul`) is an
int8 x int8 -> int32 ``dot_general`` that XLA compiles; how fast that dot runs
bounds how fast flatjax's int8 forward can be. For each ``N x K x M`` product
(``--shapes``; default: the rows of a 32 x 128 batch through MiniLM's
attention projections, its FFN's first and second dense) it times, round-robin
after a warm-up, one call each of:

* ``xla-s8s8``: ``dot_general`` of int8 [N, K] and int8 [K, M] to int32 (what
  flatjax runs, its activations re-centred to int8);
* ``xla-u8s8``: the same with uint8 activations (PyTorch's operand types):
  JAX converts both to int32 first;
* ``xla-f32``: the float32 product;
* ``torch-int8``: ``torch.ops.quantized.linear_dynamic`` (FBGEMM), activation
  quantization included; ``torch-f32``: ``torch.nn.functional.linear``;
* ``flatjax-int8``: flatjax's whole int8 dense layer (:func:`flatjax.quant.int8.dense`,
  jitted: the activations' range and quantization, the product, the float output), on
  the native kernel of :mod:`flatjax.kernels` where it runs; ``torch-int8``'s match.

Prints median milliseconds and billions of multiply-adds per second per
product; ``--output FILE`` appends one JSON line with the machine and the
revision.

    python benchmarks/int8_matmul.py --output benchmarks/results/int8_matmul_cpu.jsonl
"""

from __future__ import annotations

import argparse
import statistics
import time

KINDS = ("xla-s8s8", "xla-u8s8", "xla-f32", "torch-int8", "torch-f32", "flatjax-int8")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--shapes", default="4096x384x384,4096x384x1536,4096x1536x384",
                 help="comma-separated NxKxM")
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--malloc", choices=("flatjax", "default"), default="flatjax")
  p.add_argument("--output", default=None, help="append a JSON line with the results here")
  args = p.parse_args(argv)
  try:
    args.shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
  except ValueError:
    p.error(f"--shapes must be NxKxM,..., got {args.shapes!r}")
  if any(len(s) != 3 or min(s) < 1 for s in args.shapes):
    p.error("--shapes needs three positive sizes per product")
  return args


def _runners(n: int, k: int, m: int):
  import jax
  import jax.numpy as jnp
  import numpy as np
  import torch

  rng = np.random.RandomState(0)
  x8 = rng.randint(-128, 128, (n, k)).astype(np.int8)
  w8 = rng.randint(-127, 128, (k, m)).astype(np.int8)
  xf, wf = rng.randn(n, k).astype(np.float32), rng.randn(k, m).astype(np.float32)
  dims = (((1,), (0,)), ((), ()))
  int_dot = jax.jit(lambda a, b: jax.lax.dot_general(a, b, dims,
                                                     preferred_element_type=jnp.int32))
  f32_dot = jax.jit(lambda a, b: a @ b)
  s8, u8 = jnp.asarray(x8), jnp.asarray(x8.view(np.uint8))
  w = jnp.asarray(w8)
  jxf, jwf = jnp.asarray(xf), jnp.asarray(wf)
  tx, tw = torch.from_numpy(xf), torch.from_numpy(np.ascontiguousarray(wf.T))
  packed = torch.ops.quantized.linear_prepack(
      torch.quantize_per_tensor(tw, 0.05, 0, torch.qint8), None)

  from flatjax.quant import int8
  qkernel = int8.quantize_weight(jwf)
  layer = jax.jit(lambda x: int8.dense(x, qkernel))

  def torch_int8():
    with torch.no_grad():
      return torch.ops.quantized.linear_dynamic(tx, packed, True)

  def torch_f32():
    with torch.no_grad():
      return torch.nn.functional.linear(tx, tw)
  return {
      "xla-s8s8": lambda: jax.block_until_ready(int_dot(s8, w)),
      "xla-u8s8": lambda: jax.block_until_ready(int_dot(u8, w)),
      "xla-f32": lambda: jax.block_until_ready(f32_dot(jxf, jwf)),
      "torch-int8": torch_int8,
      "torch-f32": torch_f32,
      "flatjax-int8": lambda: jax.block_until_ready(layer(jxf)),
  }


def main(argv=None):
  args = parse_args(argv)
  if args.malloc == "flatjax":
    from flatjax.runtime import tune_malloc
    tune_malloc()
  from flatjax import jsonl, kernels, provenance

  results = {}
  for n, k, m in args.shapes:
    runners = _runners(n, k, m)
    for run in runners.values():  # compile, warm up
      run()
      run()
    times = {name: [] for name in runners}
    for _ in range(args.repeats):
      for name, run in runners.items():
        run()  # untimed: the switch from another runtime
        t0 = time.perf_counter()
        run()
        times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    gmacs = {name: n * k * m / s / 1e9 for name, s in med.items()}
    shape = f"{n}x{k}x{m}"
    results[shape] = {"seconds": med, "gmac_per_s": gmacs}
    print(f"{shape}: " + "  ".join(f"{name} {med[name] * 1e3:.2f}ms ({gmacs[name]:.0f})"
                                   for name in KINDS), flush=True)
  print("(milliseconds per product, billions of multiply-adds per second in brackets)")
  if args.output:
    jsonl.append(args.output, provenance.benchmark_row("int8_matmul", args.output, {
        "repeats": args.repeats, "malloc": args.malloc,
        "flatjax_kernels": kernels.unavailable_reason() or "native", "results": results}))
    print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
