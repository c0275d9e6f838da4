"""The int8 dense layer as a native CPU kernel (``int8_dense.cc``).

XLA:CPU compiles an int8 x int8 -> int32 ``dot_general`` to about 1.1-1.6x
the speed of its float32 product on a 2-core AVX-512 VNNI CPU, where FBGEMM
(PyTorch's dynamic int8) gets 2.8-3.7x (``benchmarks/int8_matmul.py``). The
kernel multiplies uint8 activations by int8 weights with ``VPDPBUSD``, the
instruction FBGEMM uses, and quantizes each block of rows just before
multiplying it, so an int8 layer is one pass over its input. It computes
exactly the arithmetic of :func:`flatjax.quant.int8.dense`'s XLA path, float64
multiply-adds included: either path gives the same bits. Building and
platforms: :mod:`flatjax.kernels`.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from flatjax import kernels

TARGET = "flatjax_int8_dense"
GELU_TARGET = "flatjax_int8_dense_gelu"
PANEL = 64  # output columns per packed weight panel (kPanel in the C++)


def pack_weights(wq: jax.Array) -> jax.Array:
  """int8 ``[K, M]`` -> ``[ceil(M/64), ceil(K/4), 64, 4]``, zero-padded.

  Each 64-byte row holds four consecutive ``k`` of 16 output columns, the
  operand layout of ``VPDPBUSD``; a panel's 64 columns are contiguous over
  ``k``, so a register tile streams its weights in order.
  """
  k, m = wq.shape
  k_padded, m_padded = -(-k // 4) * 4, -(-m // PANEL) * PANEL
  w = jnp.pad(wq.astype(jnp.int8), ((0, k_padded - k), (0, m_padded - m)))
  return w.reshape(k_padded // 4, 4, m_padded // PANEL, PANEL).transpose(2, 0, 3, 1)


def int8_dense(x: jax.Array, inverse: jax.Array, zero_point: jax.Array, wq: jax.Array,
               multiplier: jax.Array, bias: jax.Array) -> jax.Array:
  """The kernel: ``x`` float32 ``[N, K]``, ``wq`` int8 ``[K, M]`` -> float32 ``[N, M]``.

  ``inverse`` (``1 / scale``) and ``zero_point`` are the activations' scalars,
  ``multiplier`` (``scale * weight scale``) and ``bias`` float32 ``[M]``.
  """
  return _call(TARGET, x, inverse, zero_point, wq, multiplier, bias)


def int8_dense_gelu(x: jax.Array, inverse: jax.Array, zero_point: jax.Array, wq: jax.Array,
                    multiplier: jax.Array, bias: jax.Array) -> tuple[jax.Array, jax.Array]:
  """:func:`int8_dense` then BERT's exact GELU, ``y/2 * (1 + erf(y/sqrt 2))`` with
  XLA:CPU's float32 erf op for op; returns it and its range ``f32[2]``:
  ``(min(0, min g), max(0, max g))``, NaN if any ``g`` is, as the next layer's
  quantization reduces it."""
  return _call(GELU_TARGET, x, inverse, zero_point, wq, multiplier, bias,
               also=(jax.ShapeDtypeStruct((2,), jnp.float32),))


def _call(target, x, inverse, zero_point, wq, multiplier, bias, also=()):
  """The kernel ``target``: its [N, M] output, then the results ``also`` declares."""
  kernels.require()
  y = jax.ShapeDtypeStruct((x.shape[0], wq.shape[1]), jnp.float32)
  results = (y, *also) if also else y
  # Under vmap, one call per example: each quantizes its own rows, as the XLA path.
  call = jax.ffi.ffi_call(target, results, vmap_method="sequential")
  return call(x.astype(jnp.float32), jnp.asarray(inverse, jnp.float32),
              jnp.asarray(zero_point, jnp.int32), pack_weights(wq),
              jnp.asarray(multiplier, jnp.float32), jnp.asarray(bias, jnp.float32))


def _probe_values() -> np.ndarray:
  """float32 values where a GELU's bits could part: every 4096th bit pattern
  (each exponent, both signs), every value within 4096 ulps of the erf's two
  known clamps (|y| = 3.7439 sqrt 2 and 3.8325 sqrt 2), zeros, infinities, NaN."""
  spread = np.arange(0, 1 << 32, 4096, dtype=np.uint64).astype(np.uint32).view(np.float32)
  near = [np.arange(-4096, 4096, dtype=np.int64) + np.float32(t * np.sqrt(2)).view(np.int32)
          for t in (3.7439211627767994, 3.832506856900711)]
  edges = np.concatenate(near).astype(np.uint32).view(np.float32)
  special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
  return np.concatenate([spread, edges, -edges, special])


@functools.cache
def gelu_matches_xla(gelu: Callable[[jax.Array], jax.Array]) -> bool:
  """Whether :func:`int8_dense_gelu` gives the bits of ``gelu`` applied by XLA to
  :func:`int8_dense`'s output (as a model fuses it), on :func:`_probe_values`.

  The kernel's erf is XLA:CPU's as jaxlib 0.10 compiles it inside a fusion;
  another XLA may approximate it otherwise, and then the model stays on XLA.
  """
  values = _probe_values()
  # A zero input makes every product 0: the outputs are the bias, the values.
  x = np.zeros((1, 4), np.float32)
  wq = np.ones((4, values.size), np.int8)
  multiplier = np.ones(values.size, np.float32)

  def both(bias):
    reference = gelu(int8_dense(x, 1.0, 0, wq, multiplier, bias))
    return reference, int8_dense_gelu(x, 1.0, 0, wq, multiplier, bias)[0]
  with jax.ensure_compile_time_eval(), jax.default_device(jax.local_devices(backend="cpu")[0]):
    reference, fused = (np.asarray(a) for a in jax.jit(both)(values))
  same = (reference.view(np.uint32) == fused.view(np.uint32)) | (np.isnan(reference)
                                                                  & np.isnan(fused))
  return bool(same.all())


def fuses(gelu: Callable[[jax.Array], jax.Array]) -> bool:
  """Whether :func:`int8_dense_gelu` stands in for ``gelu`` after :func:`int8_dense`
  here: the kernels run and give ``gelu``'s bits (:func:`gelu_matches_xla`)."""
  return kernels.enabled() and gelu_matches_xla(gelu)


def dense_or(xla_path: Callable[..., jax.Array], *args, gelu: bool = False) -> jax.Array:
  """``int8_dense(*args)`` (``int8_dense_gelu`` with ``gelu``, where :func:`fuses`
  says it may) when lowered for a CPU that runs the kernel, else
  ``xla_path(*args)``, which must compute the same."""
  if not kernels.enabled():
    return xla_path(*args)
  kernel = int8_dense_gelu if gelu else int8_dense
  return jax.lax.platform_dependent(*args, cpu=kernel, default=xla_path)
