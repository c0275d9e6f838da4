"""The attention's context product as a native CPU kernel (``attention.cc``).

``jnp.einsum("bhqk,bkhd->bqhd", probs, v)`` in BERT's layouts runs at ~9
billion multiply-adds a second on XLA:CPU (~20 ms a layer in a MiniLM forward at
batch 32 x 128 on 2 cores, a fifth of the float32 forward and a quarter of the
int8 one). XLA:CPU sums each output over ``k`` in 1, 2 or 4 interleaved partial
sums (``k mod lanes``, each in order with one fused multiply-add a term, added
pairwise at the end), how many depending on the shapes. The kernel computes any of the
three; :func:`xla_lanes` asks XLA once per shape which it uses (running both on
random operands), and a shape where none matches XLA's bits stays on XLA. So
either path gives the same bits, and results flatjax committed before the
kernel are unchanged. Derivatives are the einsum's own, on XLA's ops.
Building and platforms: :mod:`flatjax.kernels`.

(The scores product ``q k^T`` has no kernel: XLA fuses it into the softmax
that follows, and a kernel of its own, the softmax left to XLA, was slower.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from flatjax import kernels

CONTEXT = "flatjax_attention_context"
LANES = (1, 2, 4)


def einsum_context(probs: jax.Array, v: jax.Array) -> jax.Array:
  """XLA's context: ``probs [B, H, Q, K]``, ``v [B, K, H, D]`` -> ``[B, Q, H, D]``."""
  return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def kernel_context(probs: jax.Array, v: jax.Array, lanes: int = 1) -> jax.Array:
  """The kernel with ``lanes`` partial sums, float32 only (no
  derivatives: :func:`context` has them)."""
  kernels.require()
  if lanes not in LANES:
    raise ValueError(f"lanes must be one of {LANES}, got {lanes}")
  b, h, q, _ = probs.shape
  call = jax.ffi.ffi_call(CONTEXT, jax.ShapeDtypeStruct((b, q, h, v.shape[3]), jnp.float32),
                          vmap_method="sequential")
  return call(probs, v, lanes=np.int64(lanes))


@functools.cache
def xla_lanes(probs_shape: tuple[int, ...], v_shape: tuple[int, ...]) -> int | None:
  """The partial sums XLA:CPU's dot uses at these shapes, None if the kernel
  matches it with none: both run once on random operands, compared bit for bit."""
  rng = np.random.default_rng(0)
  probs = rng.random(probs_shape, dtype=np.float32)
  v = rng.standard_normal(v_shape, dtype=np.float32)
  # Concrete values even when called while tracing a computation; this
  # process's own CPU (in a multi-process run device 0 may be another's).
  with jax.ensure_compile_time_eval(), jax.default_device(jax.local_devices(backend="cpu")[0]):
    expected = np.asarray(jax.jit(einsum_context)(probs, v))
    for lanes in LANES:
      if np.array_equal(np.asarray(kernel_context(probs, v, lanes)), expected):
        return lanes
  return None


@jax.custom_jvp
def _context(probs: jax.Array, v: jax.Array) -> jax.Array:
  def on_cpu(probs, v):
    lanes = xla_lanes(tuple(probs.shape), tuple(v.shape))
    return einsum_context(probs, v) if lanes is None else kernel_context(probs, v, lanes)
  return jax.lax.platform_dependent(probs, v, cpu=on_cpu, default=einsum_context)


@_context.defjvp
def _context_jvp(primals, tangents):
  (probs, v), (dprobs, dv) = primals, tangents
  # The product is bilinear: the einsum's own derivative, on XLA's ops.
  return _context(probs, v), einsum_context(dprobs, v) + einsum_context(probs, dv)


def context(probs: jax.Array, v: jax.Array) -> jax.Array:
  """``einsum("bhqk,bkhd->bqhd", probs, v)``: on the kernel for float32 on a CPU
  that runs it and a shape where it matches XLA, else on XLA's ops; the same
  bits either way."""
  if probs.dtype != jnp.float32 or v.dtype != jnp.float32 or not kernels.enabled():
    return einsum_context(probs, v)
  return _context(probs, v)
