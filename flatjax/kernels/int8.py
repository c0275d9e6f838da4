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

from typing import Callable

import jax
import jax.numpy as jnp

from flatjax import kernels

TARGET = "flatjax_int8_dense"
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
  kernels.require()
  # Under vmap, one call per example: each quantizes its own rows, as the XLA path.
  call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((x.shape[0], wq.shape[1]), jnp.float32),
                          vmap_method="sequential")
  return call(x.astype(jnp.float32), jnp.asarray(inverse, jnp.float32),
              jnp.asarray(zero_point, jnp.int32), pack_weights(wq),
              jnp.asarray(multiplier, jnp.float32), jnp.asarray(bias, jnp.float32))


def dense_or(xla_path: Callable[..., jax.Array], *args) -> jax.Array:
  """``int8_dense(*args)`` when lowered for a CPU that runs the kernel, else
  ``xla_path(*args)``."""
  if not kernels.enabled():
    return xla_path(*args)
  return jax.lax.platform_dependent(*args, cpu=int8_dense, default=xla_path)
