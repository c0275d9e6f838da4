"""flatjax.kernels.int8: the int8 dense kernel against the arithmetic by hand.

The reference is the module docstring of flatjax.quant.int8 written out in
numpy (float64 multiply-adds rounded to float32, an int64 product): never the
kernel's or XLA's output. Where this machine cannot build or run the kernel the
tests say why and skip; the torch comparisons in test_quant_int8.py run through
whichever path dense takes.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from flatjax import kernels
from flatjax.kernels import int8 as int8_kernel
from flatjax.quant import int8


def needs_kernel():
  if (reason := kernels.unavailable_reason()) is not None:
    pytest.skip(f"no native kernels here: {reason}")


def by_hand(x, inverse, zero_point, wq, multiplier, bias):
  """The documented steps 3-5 in numpy."""
  shifted = (x.astype(np.float64) * np.float64(inverse) + zero_point).astype(np.float32)
  q = np.clip(np.rint(shifted), 0, 255).astype(np.int64)
  acc = q @ wq.astype(np.int64) - zero_point * wq.astype(np.int64).sum(0)
  assert np.abs(acc).max(initial=0) < 2**31
  y = acc.astype(np.int32).astype(np.float32).astype(np.float64) * multiplier + bias
  return y.astype(np.float32)


@pytest.mark.parametrize("n,k,m", [(1, 1, 1), (7, 5, 3), (6, 4, 64), (97, 384, 70),
                                   (200, 33, 130), (193, 1536, 17), (0, 8, 8), (5, 0, 9)])
def test_kernel_equals_the_arithmetic_by_hand(n, k, m):
  """Every tail: rows past whole 6-row tiles and 96-row blocks, k not a multiple
  of 4, columns past whole 64-column panels; empty inputs."""
  needs_kernel()
  rng = np.random.default_rng(n * 7919 + k * 31 + m)
  x = (rng.standard_normal((n, k)) * 3 + 0.5).astype(np.float32)
  if x.size:
    x.flat[0] = 40.0                                        # an outlier sets the range
  wq = rng.integers(-128, 128, (k, m)).astype(np.int8)
  if wq.size:
    wq[:, 0] = -128
  scale, zero_point = int8.choose_qparams(x)
  inverse = np.float32(1.0) / np.float32(scale)            # correctly rounded float32
  multiplier = (rng.uniform(1e-4, 1e-2, m)).astype(np.float32)
  bias = rng.standard_normal(m).astype(np.float32)
  got = np.asarray(jax.jit(int8_kernel.int8_dense)(x, inverse, zero_point, wq, multiplier, bias))
  expected = by_hand(x, inverse, int(zero_point), wq, multiplier, bias)
  assert got.shape == (n, m) and got.dtype == np.float32
  np.testing.assert_array_equal(got, expected)


def test_kernel_covers_the_uint8_range_and_extreme_zero_points():
  """Inputs quantized onto 0 and 255 (clipped past them), zero points 0 and 127."""
  needs_kernel()
  rng = np.random.default_rng(3)
  wq = rng.integers(-128, 128, (40, 20)).astype(np.int8)
  multiplier = np.full(20, 0.01, np.float32)
  bias = np.zeros(20, np.float32)
  for zero_point, lo, hi in ((0, 0.0, 5.0), (127, -5.0, 0.0), (60, -3.0, 3.0)):
    x = rng.uniform(lo * 1.5, hi * 1.5, (13, 40)).astype(np.float32)
    inverse = np.float32(127.0 / (hi - lo))
    got = np.asarray(int8_kernel.int8_dense(x, inverse, zero_point, wq, multiplier, bias))
    np.testing.assert_array_equal(got, by_hand(x, inverse, zero_point, wq, multiplier, bias))


def test_dense_runs_on_the_kernel_where_it_can():
  """The jitted int8 dense layer calls the kernel on CPU, and XLA's dot inside
  kernels.xla_only(); the two give the same bits."""
  needs_kernel()
  rng = np.random.default_rng(5)
  x = rng.standard_normal((3, 50, 96)).astype(np.float32)
  kernel = int8.quantize_weight(rng.standard_normal((96, 80)).astype(np.float32))
  b = rng.standard_normal(80).astype(np.float32)
  def dense():  # a new function each time: jit keeps a function's first trace
    return jax.jit(lambda x: int8.dense(x, kernel, b))

  assert int8_kernel.TARGET in dense().lower(x).as_text()
  with kernels.xla_only():
    xla_dense = dense()
    assert int8_kernel.TARGET not in xla_dense.lower(x).as_text()
    xla = np.asarray(xla_dense(x))
  np.testing.assert_array_equal(np.asarray(dense()(x)), xla)


# XLA:CPU's float32 erf inside a fusion (xla/codegen/intrinsic/erf.cc's rational
# interpolant), written out: numerator and denominator by Horner with one FMA a
# step (float64 product and sum, rounded once to float32), +-1 from |x| >= 3.7439.
ERF_ALPHA = (0.00022905065861350646, 0.0034082910107109506, 0.050955695062380861,
             0.18520832239976145, 1.128379143519084)
ERF_BETA = (-1.1791602954361697e-7, 0.000023547966471313185, 0.0010179625278914885,
            0.014070470171167667, 0.11098505178285362, 0.49746925110067538, 1.0)


def gelu_by_hand(y):
  """BERT's exact GELU, (y * 0.5) * (erf(y * float32(1/sqrt 2)) + 1), in float32."""
  f32 = np.float32

  def fma(a, b, c):
    return (a.astype(np.float64) * np.float64(b) + np.float64(c)).astype(f32)

  x = (y * f32(0.707106769)).astype(f32)
  x2 = (x * x).astype(f32)
  p = fma(x2, f32(ERF_ALPHA[0]), f32(ERF_ALPHA[1]))
  for a in ERF_ALPHA[2:]:
    p = fma(x2, p, f32(a))
  q = fma(x2, f32(ERF_BETA[0]), f32(ERF_BETA[1]))
  for b in ERF_BETA[2:]:
    q = fma(x2, q, f32(b))
  with np.errstate(invalid="ignore", over="ignore"):
    erf = np.where(np.abs(x) >= f32(3.7439211627767994), np.copysign(f32(1), x),
                   ((x * p).astype(f32) / q).astype(f32))
    return ((y * f32(0.5)).astype(f32) * (erf + f32(1)).astype(f32)).astype(f32)


def test_gelu_kernel_equals_the_erf_by_hand():
  """The fused GELU on every 4096th float32 and around both erf clamps, against
  the erf written out above; the range is min and max from 0, NaN-propagating.
  Values below 2**-124 are left out: XLA:CPU, and the kernel on its threads,
  flush subnormal results to zero, which numpy does not."""
  needs_kernel()
  values = int8_kernel._probe_values()
  values = values[np.isfinite(values) & (np.abs(values) >= 2.0 ** -124)]
  x = np.zeros((1, 4), np.float32)
  wq = np.ones((4, values.size), np.int8)
  g, bounds = jax.jit(int8_kernel.int8_dense_gelu)(
      x, 1.0, 0, wq, np.ones(values.size, np.float32), values)
  # A zero input: the dense outputs are the bias (-0 becoming +0).
  expected = gelu_by_hand(values + np.float32(0))
  np.testing.assert_array_equal(np.asarray(g)[0].view(np.uint32), expected.view(np.uint32))
  finite = expected[np.isfinite(expected)]
  np.testing.assert_array_equal(np.asarray(bounds), [min(finite.min(), 0), max(finite.max(), 0)])


@pytest.mark.parametrize("n,k,m", [(7, 5, 3), (97, 384, 70), (200, 33, 130), (0, 8, 8)])
def test_gelu_kernel_is_the_dense_layer_then_gelu_by_hand(n, k, m):
  """Every tail of the tiling, the GELU and the range after the epilogue by hand."""
  needs_kernel()
  rng = np.random.default_rng(n + k + m)
  x = (rng.standard_normal((n, k)) * 3).astype(np.float32)
  wq = rng.integers(-128, 128, (k, m)).astype(np.int8)
  scale, zero_point = int8.choose_qparams(x)
  inverse = np.float32(1.0) / np.float32(scale)
  multiplier = rng.uniform(1e-3, 3e-2, m).astype(np.float32)
  bias = rng.standard_normal(m).astype(np.float32)
  g, bounds = jax.jit(int8_kernel.int8_dense_gelu)(x, inverse, zero_point, wq, multiplier, bias)
  expected = gelu_by_hand(by_hand(x, inverse, int(zero_point), wq, multiplier, bias))
  np.testing.assert_array_equal(np.asarray(g), expected)
  np.testing.assert_array_equal(np.asarray(bounds), [min(expected.min(initial=0), 0),
                                                     max(expected.max(initial=0), 0)])


def test_gelu_range_is_nan_when_an_output_is():
  """As XLA's min and max propagate NaN (a NaN bias: quantization clips NaN inputs)."""
  needs_kernel()
  x = np.array([[1.0, 2.0], [0.5, 0.25]], np.float32)
  bias = np.array([0.0, np.nan, 1.0], np.float32)
  g, bounds = int8_kernel.int8_dense_gelu(x, np.float32(50.0), 0, np.ones((2, 3), np.int8),
                                          np.full(3, 0.01, np.float32), bias)
  assert np.isnan(np.asarray(g)[:, 1]).all() and np.isnan(np.asarray(bounds)).all()


def test_dense_activation_fuses_bert_gelu_and_only_it():
  """BERT's GELU runs in the kernel, its range beside it: the same bits as the
  layer then XLA's GELU and reduce; an activation the kernel does not compute
  (jax.nn.gelu's erfc form) stays on XLA."""
  needs_kernel()
  from flatjax.models.bert import ACTIVATIONS
  gelu = ACTIVATIONS["gelu"]
  assert int8_kernel.gelu_matches_xla(gelu)
  assert not int8_kernel.gelu_matches_xla(lambda v: jax.nn.gelu(v, approximate=False))
  rng = np.random.default_rng(8)
  x = rng.standard_normal((2, 75, 96)).astype(np.float32)
  kernel = int8.quantize_weight(rng.standard_normal((96, 200)).astype(np.float32))
  b = rng.standard_normal(200).astype(np.float32)
  fused = jax.jit(lambda x: int8.dense_activation(x, kernel, b, "dynamic", gelu))
  assert int8_kernel.GELU_TARGET in fused.lower(x).as_text()
  g, (lo, hi) = fused(x)
  with kernels.xla_only():
    expected = np.asarray(jax.jit(lambda x: gelu(int8.dense(x, kernel, b)))(x))
  np.testing.assert_array_equal(np.asarray(g), expected)
  assert (float(lo), float(hi)) == (min(expected.min(), 0), max(expected.max(), 0))


def test_packed_weights_hold_four_k_of_sixteen_columns_a_row():
  """[K, M] -> [M/64, K/4, 64, 4], zero-padded: element (p, t, c, j) is
  w[4t + j, 64p + c] (the VPDPBUSD operand layout)."""
  w = np.arange(6 * 70).reshape(6, 70) % 251 - 125
  packed = np.asarray(int8_kernel.pack_weights(jnp.asarray(w, jnp.int8)))
  assert packed.shape == (2, 2, 64, 4)
  for p, t, c, j in [(0, 0, 0, 0), (0, 1, 5, 1), (1, 0, 5, 3), (1, 1, 2, 1), (1, 1, 10, 0)]:
    row, col = 4 * t + j, 64 * p + c
    expected = w[row, col] if row < 6 and col < 70 else 0
    assert packed[p, t, c, j] == expected


def test_unavailable_kernels_say_why(monkeypatch):
  monkeypatch.setenv(kernels.KERNELS_ENV, "xla")
  kernels._load.cache_clear()
  try:
    assert kernels.unavailable_reason() == f"{kernels.KERNELS_ENV}=xla"
    assert not kernels.enabled()
    with pytest.raises(RuntimeError, match="do not run here"):
      int8_kernel.int8_dense(np.zeros((1, 4), np.float32), 1.0, 0, np.zeros((4, 2), np.int8),
                        np.ones(2, np.float32), np.zeros(2, np.float32))
  finally:
    monkeypatch.delenv(kernels.KERNELS_ENV)
    kernels._load.cache_clear()
