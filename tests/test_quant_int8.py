"""flatjax.quant.int8 against hand-derived math and PyTorch's own quantization.

The references: the formulas worked out by hand in numpy (scales, error
bounds, integer products), PyTorch's observers (``MinMaxObserver``,
``PerChannelMinMaxObserver``), ``torch._choose_qparams_per_tensor`` and
``torch.ao.nn.quantized.dynamic.Linear`` as ``quantize_dynamic`` builds it
(FBGEMM on x86). Never flatjax's own output.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from conftest import TORCH_INT8_WARNINGS  # noqa: E402
from flatjax.errors import FlatjaxInputError  # noqa: E402
from flatjax import kernels  # noqa: E402
from flatjax.quant import int8  # noqa: E402
from flatjax.quant.int8 import QArray, QuantConfig  # noqa: E402

pytestmark = [*TORCH_INT8_WARNINGS, pytest.mark.usefixtures("torch_one_thread")]


f32 = np.float32


def needs_fbgemm():
  if torch.backends.quantized.engine not in ("x86", "fbgemm"):
    pytest.skip(f"PyTorch's quantized engine is {torch.backends.quantized.engine}, not FBGEMM")


def torch_dynamic_linear(w: np.ndarray, b: np.ndarray | None = None, qconfig=None):
  """``quantize_dynamic``'s int8 Linear for a weight ``w`` [out, in] (PyTorch layout)."""
  needs_fbgemm()
  lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
  with torch.no_grad():
    lin.weight.copy_(torch.from_numpy(w))
    if b is not None:
      lin.bias.copy_(torch.from_numpy(b))
  spec = {torch.nn.Linear} if qconfig is None else {torch.nn.Linear: qconfig}
  # quantize_dynamic swaps children: wrap the Linear so it is one.
  q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), spec, dtype=torch.qint8)[0]
  assert type(q).__module__.startswith("torch.ao.nn.quantized.dynamic")
  return q


def torch_run(module, x: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return module(torch.from_numpy(x)).numpy()


def weights(seed: int, shape=(48, 40), outlier: float | None = None) -> np.ndarray:
  rng = np.random.default_rng(seed)
  w = rng.standard_normal(shape).astype(f32) * f32(rng.uniform(0.01, 2.0))
  if outlier is not None:
    w.flat[rng.integers(w.size)] = f32(outlier)
  return w


_qparams_from_range = jax.jit(int8.qparams_from_range, static_argnums=2)


def qparams(x, reduce_range=True):
  """flatjax's (scale, zero point) of ``x``, from its min and max (one compiled
  program for every input; test_choose_qparams_... checks the reduction)."""
  x = np.asarray(x, f32)
  lo, hi = (x.min(), x.max()) if x.size else (f32(0), f32(0))
  scale, zero_point = _qparams_from_range(lo, hi, reduce_range)
  return np.asarray(scale), int(zero_point)


# --------------------------------------------------------------------------- configs


def test_registry_names_the_recipes():
  assert int8.names() == ["dynamic", "dynamic-per-channel", "weight-only",
                          "weight-only-per-channel"]
  torch_default = int8.get_config("dynamic")
  assert (torch_default.weight_granularity, torch_default.weight_range,
          torch_default.activations, torch_default.reduce_range) == (
              "per_tensor", "full", "dynamic", True)
  assert int8.get_config(None) is torch_default
  per_channel = int8.get_config("dynamic-per-channel")
  assert (per_channel.weight_granularity, per_channel.weight_range) == ("per_channel", "narrow")
  assert int8.get_config("weight-only").activations == "none"
  custom = QuantConfig("mine", "per_channel", "full")
  assert int8.get_config(custom) is custom


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("seed,outlier", [(0, None), (1, 9.0), (2, -9.0), (3, None)])
def test_per_tensor_scale_is_absmax_over_127_5_as_torchs_observer(seed, outlier):
  w = weights(seed, outlier=outlier)                       # [out, in], PyTorch's layout
  by_hand = f32(np.abs(w).max()) / f32(127.5)              # absmax / ((127 - -128) / 2)
  observer = torch.ao.quantization.MinMaxObserver(dtype=torch.qint8,
                                                  qscheme=torch.per_tensor_symmetric)
  observer(torch.from_numpy(w))
  torch_scale, torch_zp = observer.calculate_qparams()
  assert torch_scale.item() == by_hand and torch_zp.item() == 0
  assert (observer.quant_min, observer.quant_max) == (-128, 127)

  q = int8.quantize_weight(w.T, "dynamic")                 # flax layout [in, out]
  assert q.values.dtype == jnp.int8 and q.scale.dtype == jnp.float32 and q.scale.shape == ()
  assert np.asarray(q.scale) == by_hand
  torch_q = torch.quantize_per_tensor(torch.from_numpy(w), float(torch_scale), 0, torch.qint8)
  np.testing.assert_array_equal(np.asarray(q.values), torch_q.int_repr().numpy().T)
  # The full range: the absmax weight lands on +-127.5 (give or take float32's
  # rounding of w * (1/scale)): a positive one is clipped to 127, a negative one
  # rounds to -128 or -127.
  if outlier is not None:
    at = np.asarray(q.values).T.flat[np.abs(w).argmax()]
    assert at == 127 if outlier > 0 else at in (-128, -127)


def test_per_tensor_weights_equal_quantize_dynamic_weights():
  w = weights(4, (24, 36))
  module = torch_dynamic_linear(w)
  packed, _ = module._packed_params._weight_bias()
  assert packed.qscheme() == torch.per_tensor_affine and packed.q_zero_point() == 0
  q = int8.quantize_weight(w.T, "dynamic")
  assert float(q.scale) == packed.q_scale()
  np.testing.assert_array_equal(np.asarray(q.values), packed.int_repr().numpy().T)


def test_per_channel_scales_are_absmax_over_127():
  w = weights(5, (40, 24))                                  # flax [in, out]
  w[:, 3] = 0.0                                             # a pruned output channel
  q = int8.quantize_weight(w, "dynamic-per-channel")
  by_hand = np.abs(w).max(axis=0) / f32(127)
  by_hand[3] = f32(2.0 ** -23)                              # float32 eps: never a 0 scale
  assert q.scale.shape == (24,)
  np.testing.assert_array_equal(np.asarray(q.scale), by_hand.astype(f32))
  values = np.asarray(q.values)
  assert values.min() >= -127 and values.max() <= 127      # narrow, symmetric range
  # Each channel's absmax weight lands exactly on +-127.
  rows = np.abs(w).argmax(axis=0)
  ends = values[rows, np.arange(24)]
  live = np.arange(24) != 3
  np.testing.assert_array_equal(np.abs(ends[live]), 127)
  np.testing.assert_array_equal(np.sign(ends[live]), np.sign(w[rows, np.arange(24)][live]))
  assert np.all(values[:, 3] == 0)


def test_per_channel_full_range_equals_torchs_per_channel_observer():
  w = weights(6, (16, 40))                                  # [out, in]
  observer = torch.ao.quantization.PerChannelMinMaxObserver(
      ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
  observer(torch.from_numpy(w))
  scales, zps = observer.calculate_qparams()
  config = QuantConfig("torch-per-channel", "per_channel", "full")
  q = int8.quantize_weight(w.T, config)
  np.testing.assert_array_equal(np.asarray(q.scale), scales.numpy().astype(f32))
  np.testing.assert_array_equal(np.asarray(q.scale), np.abs(w).max(axis=1) / f32(127.5))
  torch_q = torch.quantize_per_channel(torch.from_numpy(w), scales.double(), zps, 0, torch.qint8)
  np.testing.assert_array_equal(np.asarray(q.values), torch_q.int_repr().numpy().T)


@pytest.mark.parametrize("name", ["dynamic", "dynamic-per-channel",
                                  QuantConfig("a", "per_tensor", "narrow"),
                                  QuantConfig("b", "per_channel", "full")])
def test_dequantize_error_is_at_most_half_a_step(name):
  """|w - scale * q| <= scale / 2 for every weight inside the clip range (all of
  them: the range is set by the absmax). The slack covers float32's rounding of
  w * (1 / scale) (relative 2**-23 of at most 127.5 steps) and of scale * q."""
  config = int8.get_config(name)
  rng = np.random.default_rng(7)
  w = np.concatenate([rng.standard_normal((64, 32)), rng.standard_t(2, (64, 32))]).astype(f32)
  q = int8.quantize_weight(w, config)
  scale = np.broadcast_to(np.asarray(q.scale, np.float64), w.shape)
  back = np.asarray(int8.dequantize(q), np.float64)
  err = np.abs(w.astype(np.float64) - back)
  assert np.all(err <= scale / 2 * (1 + 1e-4))
  assert (err / scale).max() > 0.45                         # the bound is tight, not vacuous
  qmin, qmax = config.weight_qrange
  values = np.asarray(q.values)
  assert values.min() >= qmin and values.max() <= qmax
  np.testing.assert_array_equal(back, (values * scale).astype(f32))


def test_zero_and_empty_weights():
  zero = int8.quantize_weight(np.zeros((8, 4), f32))
  assert float(zero.scale) == 2.0 ** -23 and not np.asarray(zero.values).any()
  empty = int8.quantize_weight(np.zeros((8, 0), f32), "dynamic-per-channel")
  assert empty.values.shape == (8, 0) and empty.scale.shape == (0,)


# --------------------------------------------------------------------------- activations


def activation_cases():
  rng = np.random.default_rng(8)
  normal = rng.standard_normal(200).astype(f32)
  cases = {
      "normal": normal,
      "shifted": normal * f32(3) + f32(1.7),
      "all_positive": np.abs(normal) + f32(0.25),
      "all_negative": -np.abs(normal) - f32(0.25),
      "zeros": np.zeros(50, f32),
      "one_value": np.array([2.5], f32),
      "one_negative": np.array([-0.75], f32),
      "tiny": normal * f32(1e-7),                             # scale below 6.1e-5: raised to it
      "tiny_positive": np.abs(normal) * f32(1e-8),
      "tiny_negative": -np.abs(normal) * f32(1e-8),
      "huge": normal * f32(1e30),
      "outlier": np.concatenate([normal, [f32(190.0)]]).astype(f32),
      # an exactly representable range whose zero point is a tie (1.5 -> 2)
      "half_tie": np.array([-1.5, 125.5, 3.0], f32) / f32(16),
  }
  for seed in range(20):
    r = np.random.default_rng(100 + seed)
    cases[f"random{seed}"] = (r.standard_normal(r.integers(1, 300)) * 10.0 ** r.uniform(-6, 4)
                              + r.uniform(-2, 2) * 10.0 ** r.uniform(-6, 2)).astype(f32)
  return cases


@pytest.mark.parametrize("reduce_range", [True, False])
def test_activation_qparams_equal_torchs(reduce_range):
  choose = getattr(torch, "_choose_qparams_per_tensor", None)
  if choose is None:
    pytest.skip("this PyTorch has no torch._choose_qparams_per_tensor")
  for name, x in activation_cases().items():
    torch_scale, torch_zp = choose(torch.from_numpy(x), reduce_range)
    scale, zp = qparams(x, reduce_range)
    assert scale.dtype == np.float32
    assert scale == f32(torch_scale) and zp == torch_zp, (name, scale, torch_scale, zp, torch_zp)


def test_activation_qparams_by_hand():
  # [-1, 3] on [0, 127]: scale 4/127, zero point rint(127/4) = rint(31.75) = 32.
  scale, zp = qparams(np.array([-1.0, 0.5, 3.0], f32))
  assert scale == f32(np.float64(4.0) / 127) and zp == 32
  # All positive: the range is widened to [0, max], zero point 0.
  scale, zp = qparams(np.array([2.0, 5.0], f32))
  assert scale == f32(np.float64(5.0) / 127) and zp == 0
  # All negative: [min, 0], zero point at the top of the range.
  scale, zp = qparams(np.array([-6.35, -1.0], f32), reduce_range=False)
  assert scale == f32(np.float64(f32(6.35)) / 255) and zp == 255
  # Zeros and an empty input: a zero range gets scale 0.1 (FBGEMM's fallback).
  for x in (np.zeros(5, f32), np.zeros((0, 3), f32)):
    scale, zp = qparams(x)
    assert scale == f32(0.1) and zp == 0


def test_choose_qparams_reduces_over_the_whole_tensor():
  rng = np.random.default_rng(13)
  x = (rng.standard_normal((2, 3, 50)) * 3 + 1).astype(f32)
  for reduce_range in (True, False):
    scale, zp = int8.choose_qparams(x, reduce_range)
    assert (np.asarray(scale), int(zp)) == qparams(x, reduce_range)
    torch_scale, torch_zp = torch._choose_qparams_per_tensor(torch.from_numpy(x), reduce_range)
    assert (np.asarray(scale), int(zp)) == (f32(torch_scale), torch_zp)
  scale, zp = int8.choose_qparams(np.zeros((4, 0), f32))  # empty: FBGEMM's 0, 0 range
  assert (np.asarray(scale), int(zp)) == (f32(0.1), 0)


def fbgemm_quantized_activations(x: np.ndarray) -> tuple[np.ndarray, int]:
  """The uint8 activations FBGEMM computed, read back through an identity layer.

  The identity quantizes to 127 on the diagonal (scale 1/127.5), so output j is
  ``(q_j - zp) * 127 * scale_x * scale_w``: exactly recoverable.
  """
  k = x.shape[-1]
  module = torch_dynamic_linear(np.eye(k, dtype=f32))
  packed, _ = module._packed_params._weight_bias()
  assert np.all(packed.int_repr().numpy() == 127 * np.eye(k))
  scale_x, zp = torch._choose_qparams_per_tensor(torch.from_numpy(x), True)
  y = torch_run(module, x[None])[0]
  steps = y.astype(np.float64) / (f32(scale_x) * f32(packed.q_scale()) * 127)
  assert np.all(np.abs(steps - np.rint(steps)) < 1e-3)
  return np.rint(steps).astype(np.int64) + zp, zp


def discriminating_input(seed: int) -> np.ndarray:
  """A random input plus values inside its range on which plausible rounding
  rules disagree: x / scale instead of x * (1/scale), no fused multiply-add, the
  zero point added after rounding. Found by search (~1e-5 of random values);
  only the input is chosen this way, the expected values are FBGEMM's."""
  rng = np.random.default_rng(seed)
  x = (rng.standard_normal(61) * 2).astype(f32)
  scale, zp = torch._choose_qparams_per_tensor(torch.from_numpy(x), True)
  scale = f32(scale)
  inverse = f32(1) / scale
  candidates = rng.uniform(x.min(), x.max(), 2_000_000).astype(f32)
  fma = np.rint(f32(candidates.astype(np.float64) * inverse + zp))
  others = (np.rint(f32(candidates / scale) + f32(zp)),        # divided, not multiplied
            np.rint(f32(candidates * inverse) + f32(zp)),      # two roundings, no FMA
            np.rint(candidates * inverse) + zp)                # zero point after rounding
  picks = [candidates[np.argmax(fma != other)] for other in others if np.any(fma != other)]
  assert len(picks) == 3
  return np.concatenate([x, picks]).astype(f32)  # same min and max: same qparams


def test_activations_quantized_as_fbgemm_does():
  """Every uint8 activation equals FBGEMM's, including exact halves: FBGEMM adds
  the zero point inside one fused multiply-add before rounding half to even
  (``rint(fma(x, 1/scale, zp))``): x/scale = 100.5 with zp = 1 gives
  rint(101.5) = 102, where adding zp after rounding would give 101; and a
  value can land on 128, above the 7-bit range (a zero point that is itself
  a tie, 1.5 -> 2, then 125.5 + 2 = 127.5 -> 128)."""
  needs_fbgemm()
  rng = np.random.default_rng(9)
  step = f32(2.0 ** -4)
  # Ranges of exactly 127 steps of 1/16, so scale = 1/16 and every x/scale is exact.
  crafted = np.array([-1.5, 125.5, 100.5, 101.5, 0.5, -0.5, 3.5, 0.0, 64.0], f32) * step
  odd_zp = np.array([-1.0, 126.0, 100.5, 0.5, 7.5, -0.5], f32) * step
  cases = [crafted, odd_zp, discriminating_input(0), discriminating_input(1)]
  cases += [(rng.standard_normal(k) * rng.uniform(0.1, 4) + rng.uniform(-1, 1)).astype(f32)
            for k in (7, 13, 64, 67, 200)]
  for x in cases:
    expected, torch_zp = fbgemm_quantized_activations(x)
    scale, zp = qparams(x)
    assert zp == torch_zp
    got = np.asarray(jax.jit(int8.quantize_activation)(x, scale, zp))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
  # The tie cases by hand.
  assert qparams(crafted) == (step, 2) and qparams(odd_zp) == (step, 1)
  q = np.asarray(int8.quantize_activation(crafted, step, 2))
  assert q[1] == 128 and q[2] == 102 and q[3] == 104
  q = np.asarray(int8.quantize_activation(odd_zp, step, 1))
  assert list(q[2:]) == [102, 2, 8, 0]


def test_int8_matmul_is_exact():
  """The int32 product equals numpy's int64 one for the full uint8 range and any
  zero point (the shifted form (x - 128) @ w + (128 - zp) colsum(w))."""
  rng = np.random.default_rng(10)
  for k, zp in ((1, 0), (37, 255), (300, 77), (2048, 128)):
    xq = rng.integers(0, 256, (9, k)).astype(np.uint8)
    xq[0] = 255
    wq = rng.integers(-128, 128, (k, 11)).astype(np.int8)
    wq[:, 0] = -128
    got = np.asarray(jax.jit(int8.int8_matmul)(xq, zp, wq))
    expected = (xq.astype(np.int64) - zp) @ wq.astype(np.int64)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------- one layer


def assert_matches_torch(got: np.ndarray, ref: np.ndarray):
  """The same arithmetic gives the same float32 bits; allow 1e-6 of the output's
  scale in case a rare double rounding (float64 emulating an FMA) differs."""
  assert got.shape == ref.shape and got.dtype == np.float32
  assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max()
  assert np.mean(got == ref) >= 0.999


@pytest.mark.parametrize("shape,bias,seed", [((8, 40, 24), True, 0), ((1, 13, 7), True, 1),
                                             ((3, 5, 67, 130), True, 2), ((16, 384, 16), False, 3),
                                             ((2, 4, 1536, 32), True, 4)])
@pytest.mark.parametrize("path", ["default", "xla"])
def test_int8_dense_equals_torch_dynamic_linear(shape, bias, seed, path):
  """Both paths: the native kernel where this CPU runs it, and XLA's integer dot."""
  *lead, k, n = shape
  rng = np.random.default_rng(seed)
  w = (rng.standard_normal((n, k)) * rng.uniform(0.01, 1)).astype(f32)
  b = rng.standard_normal(n).astype(f32) if bias else None
  x = (rng.standard_normal((*lead, k)) * rng.uniform(0.1, 5) + rng.uniform(-2, 2)).astype(f32)
  x.flat[rng.integers(x.size)] = f32(40.0)                  # an outlier sets the range
  ref = torch_run(torch_dynamic_linear(w, b), x)
  kernel = int8.quantize_weight(w.T, "dynamic")
  with kernels.xla_only() if path == "xla" else contextlib.nullcontext():
    # A new function: jit would reuse the other path's trace of int8.dense.
    got = np.asarray(jax.jit(lambda x, k, b: int8.dense(x, k, b, "dynamic"))(x, kernel, b))
  assert_matches_torch(got, ref)


def test_per_channel_dense_equals_torchs_per_channel_dynamic_linear():
  rng = np.random.default_rng(11)
  w = (rng.standard_normal((24, 96)) * rng.uniform(0.01, 1, (24, 1))).astype(f32)
  b = rng.standard_normal(24).astype(f32)
  x = (rng.standard_normal((6, 10, 96)) * 2 - 0.5).astype(f32)
  ref = torch_run(torch_dynamic_linear(w, b, torch.ao.quantization.per_channel_dynamic_qconfig), x)
  config = QuantConfig("torch-per-channel", "per_channel", "full")
  got = np.asarray(int8.dense(x, int8.quantize_weight(w.T, config), b, config))
  assert_matches_torch(got, ref)


def test_weight_only_dense_is_float_dense_on_dequantized_weights():
  rng = np.random.default_rng(12)
  w = rng.standard_normal((32, 16)).astype(f32)
  b = rng.standard_normal(16).astype(f32)
  x = rng.standard_normal((5, 32)).astype(f32)
  kernel = int8.quantize_weight(w, "weight-only-per-channel")
  by_hand = np.asarray(kernel.values, np.float64) * (np.abs(w).max(0) / f32(127)).astype(f32)
  ref = x.astype(np.float64) @ by_hand + b
  got = np.asarray(int8.dense(x, kernel, b, "weight-only-per-channel"))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  # Really quantized: the float weights give a visibly different output.
  assert np.abs(x @ w + b - ref).max() > 1e-3


def test_dense_keeps_the_input_dtype_and_handles_empty_layers():
  kernel = int8.quantize_weight(np.ones((4, 3), f32))
  y = int8.dense(jnp.ones((2, 4), jnp.bfloat16), kernel)
  assert y.dtype == jnp.bfloat16 and y.shape == (2, 3)
  # A structurally pruned layer: no input features, or no output features.
  empty_in = int8.quantize_weight(np.zeros((0, 3), f32))
  np.testing.assert_array_equal(int8.dense(np.zeros((2, 0), f32), empty_in, np.ones(3, f32)),
                                np.ones((2, 3), f32))
  assert int8.dense(np.ones((2, 4), f32), int8.quantize_weight(np.zeros((4, 0), f32))).shape \
      == (2, 0)


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises():
  with pytest.raises(FlatjaxInputError, match="unknown quantization config"):
    int8.get_config("int4")
  with pytest.raises(FlatjaxInputError, match="weight_granularity"):
    QuantConfig("x", weight_granularity="per_row")
  with pytest.raises(FlatjaxInputError, match="weight_range"):
    QuantConfig("x", weight_range="wide")
  with pytest.raises(FlatjaxInputError, match="activations"):
    QuantConfig("x", activations="static")
  with pytest.raises(FlatjaxInputError, match="reduce_range"):
    QuantConfig("x", reduce_range=1)
  with pytest.raises(FlatjaxInputError, match="name"):
    QuantConfig("")
  with pytest.raises(FlatjaxInputError, match="floating point"):
    int8.quantize_weight(np.ones((3, 3), np.int32))
  with pytest.raises(FlatjaxInputError, match="scalar"):
    int8.quantize_weight(np.float32(1.0))
  kernel = int8.quantize_weight(np.ones((4, 3), f32))
  with pytest.raises(FlatjaxInputError, match="does not fit a kernel"):
    int8.dense(np.ones((2, 5), f32), kernel)
  with pytest.raises(FlatjaxInputError, match="bias"):
    int8.dense(np.ones((2, 4), f32), kernel, np.ones(4, f32))
  with pytest.raises(FlatjaxInputError, match="QArray"):
    int8.dense(np.ones((2, 4), f32), np.ones((4, 3), f32))
  with pytest.raises(FlatjaxInputError, match="operands"):
    int8.int8_matmul(np.ones((2, 4), np.uint8), 0, np.ones((3, 3), np.int8))
  assert isinstance(kernel, QArray) and kernel.shape == (4, 3)
