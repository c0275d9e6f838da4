"""Int8 quantization arithmetic: PyTorch's dynamic post-training recipe, bit for bit.

Affine quantization (Jacob et al. 2018, "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference") stores a real
tensor ``r`` as integers ``q`` with ``r ~= scale * (q - zero_point)``.

Weights (ahead of time, symmetric, ``zero_point = 0``)::

    scale = max(absmax(W) / d, eps)            eps = 2**-23 (float32 eps)
    q     = clip(rint(W * (1 / scale)), qmin, qmax)   rint: half to even

taken over the whole tensor (``per_tensor``) or per output channel
(``per_channel``: the last axis of a Flax ``[in, out]`` kernel). Two ranges:

* ``"full"``: ``[-128, 127]`` and ``d = (qmax - qmin) / 2 = 127.5``, PyTorch's
  ``MinMaxObserver(qint8, per_tensor_symmetric)`` (``observer.py``,
  ``_calculate_qparams``) that ``quantize_dynamic`` uses by default: the
  absmax weight lands on +-127.5 (up to float32 rounding), so a positive one
  is clipped to 127 and a negative one rounds to -128 or -127, half a step
  off either way.
* ``"narrow"``: ``[-127, 127]`` and ``d = 127``: the absmax lands exactly on
  +-127 and the grid is symmetric; flatjax's per-channel default.

Either way every weight inside the range is within ``scale / 2`` of
``scale * q`` (up to float32 rounding of ``W / scale``).

Activations (``activations="dynamic"``) are quantized afresh on every call,
per tensor, affine, onto uint8, exactly as FBGEMM's ``linear_dynamic`` (the
kernel behind ``torch.ao.nn.quantized.dynamic.Linear`` on x86, PyTorch's
``qlinear_dynamic.cpp``, ``apply_dynamic_impl``):

1. ``x_min, x_max`` over the whole input (every row of the batch, padding
   included; ``0, 0`` for an empty one), widened to contain 0.
2. ``ChooseQuantizationParams`` (``aten/.../cpu/QuantUtils.h``) in float64:
   with ``reduce_range`` the range is ``[0, 127]`` (7 bits: FBGEMM's
   ``vpmaddubsw`` sums pairs of u8*s8 products into int16, which 8-bit
   activations could overflow); ``scale = (x_max - x_min) / 127`` (0.1 if that
   is 0 or its float32 reciprocal overflows; below ``6.1e-5`` raised to it and
   the range stretched); ``zero_point = nearbyint(qmin - x_min / scale)``
   (or from ``x_max``, whichever adds the smaller terms) clipped to the range.
   The float32 ``scale`` is used from here on.
3. ``q = clip(rint(fma(x, 1/scale, zero_point)), 0, 255)`` (FBGEMM's
   ``QuantizeAvx2<uint8_t, LEGACY=true>``: one fused multiply-add, then
   round half to even, clipped to uint8, not to the 7-bit range: a value
   can land on 128).
4. ``acc = sum_k (q_x - zero_point) * q_w`` exactly, in int32.
5. ``y = fma(float(acc), scale_x * scale_w, bias)`` in float32
   (FBGEMM's ``ReQuantizeForFloat``).

Every step was checked against ``torch.ops.quantized.linear_dynamic`` by
experiment (tests/test_quant_int8.py keeps the checks): outputs agree bit for
bit. The float64 steps (2, and the fused multiply-adds of 3 and 5, computed
as ``float32(float64(a) * b + c)``, which equals the single-rounding FMA
except with probability ~2**-28 per element) run inside a
``jax.enable_x64`` scope on scalars and elementwise ops. TPUs have no
float64: there they run in float32, where a rare activation can round one
step differently.

On x86-64 CPUs with AVX-512 VNNI, steps 3-5 run in one native kernel
(:mod:`flatjax.kernels.int8`): the same arithmetic, float64 steps included,
so the same bits. :func:`dense_activation` also applies BERT's GELU there and
finds step 1 of the next layer (its output's range) as it writes the output.

``activations="none"`` is weight-only quantization: ``y = x @ (scale * q) + b``
in float, the dequantized weights standing in for the real ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from flatjax.errors import FlatjaxInputError
from flatjax.kernels import int8 as int8_kernel

Array = jax.Array

# torch.finfo(torch.float32).eps: the observers' lower bound on a scale.
EPS = 2.0 ** -23
# QuantUtils.h SMALL_SCALE_THRESHOLD (float16's smallest normal): activation
# scales below it are raised to it.
SMALL_SCALE = 6.1e-5

GRANULARITIES = ("per_tensor", "per_channel")
ACTIVATIONS = ("dynamic", "none")
# weight_range -> (qmin, qmax, absmax divisor d).
WEIGHT_RANGES = {"full": (-128, 127, 127.5), "narrow": (-127, 127, 127.0)}


@dataclasses.dataclass(frozen=True)
class QuantConfig:
  """How weights and activations are quantized (see the module docstring).

  ``weight_granularity``: ``per_tensor`` or ``per_channel`` (one scale per
  output feature). ``weight_range``: ``full`` ([-128, 127], absmax/127.5,
  PyTorch's observers) or ``narrow`` ([-127, 127], absmax/127).
  ``activations``: ``dynamic`` (per call, per tensor, affine uint8) or
  ``none`` (weight-only). ``reduce_range``: dynamic activations on [0, 127]
  (FBGEMM's, what PyTorch passes on x86) instead of [0, 255].
  """
  name: str = "custom"
  weight_granularity: str = "per_tensor"
  weight_range: str = "full"
  activations: str = "dynamic"
  reduce_range: bool = True

  def __post_init__(self):
    for field, allowed in (("weight_granularity", GRANULARITIES),
                           ("weight_range", tuple(WEIGHT_RANGES)),
                           ("activations", ACTIVATIONS)):
      if getattr(self, field) not in allowed:
        raise FlatjaxInputError(
            f"quantization {field} must be one of {list(allowed)}, got {getattr(self, field)!r}")
    if not isinstance(self.reduce_range, bool):
      raise FlatjaxInputError(f"reduce_range must be True or False, got {self.reduce_range!r}")
    if not isinstance(self.name, str) or not self.name:
      raise FlatjaxInputError(f"a quantization config needs a name, got {self.name!r}")

  @property
  def weight_qrange(self) -> tuple[int, int]:
    qmin, qmax, _ = WEIGHT_RANGES[self.weight_range]
    return qmin, qmax

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


#: Named recipes. "dynamic" is ``torch.ao.quantization.quantize_dynamic(model,
#: {nn.Linear}, dtype=torch.qint8)`` on x86 (FBGEMM), bit for bit.
CONFIGS: dict[str, QuantConfig] = {
    "dynamic": QuantConfig("dynamic"),
    "dynamic-per-channel": QuantConfig("dynamic-per-channel", "per_channel", "narrow"),
    "weight-only": QuantConfig("weight-only", activations="none"),
    "weight-only-per-channel": QuantConfig("weight-only-per-channel", "per_channel", "narrow",
                                           activations="none"),
}
DEFAULT = "dynamic"


def names() -> list[str]:
  return sorted(CONFIGS)


def get_config(config: str | QuantConfig | None = None) -> QuantConfig:
  """A :class:`QuantConfig` from its registry name (None: ``"dynamic"``) or itself."""
  if config is None:
    return CONFIGS[DEFAULT]
  if isinstance(config, QuantConfig):
    return config
  if isinstance(config, str) and config in CONFIGS:
    return CONFIGS[config]
  raise FlatjaxInputError(f"unknown quantization config {config!r}; known: {names()}")


@struct.dataclass
class QArray:
  """An int8 tensor and its float32 scale: the real tensor is ``values * scale``.

  ``values``: int8, a Flax kernel's shape ``[in, out]``. ``scale``: float32,
  ``[]`` (per tensor) or ``[out]`` (per channel, broadcast over the last
  axis). A pytree, so it sits in a params tree and passes through ``jit``.
  """
  values: Array
  scale: Array

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(self.values.shape)

  def dequantize(self) -> Array:
    return dequantize(self)


# --------------------------------------------------------------------------- float64 scope


def _float64_available() -> bool:
  # TPUs have no float64; every other XLA backend computes it natively.
  return jax.default_backend() != "tpu"


@contextlib.contextmanager
def _wide():
  """Yields the dtype PyTorch's double-precision steps run in: float64 (JAX's
  x64 switched on for the ops traced inside only) or, on TPU, float32."""
  if _float64_available():
    with jax.enable_x64(True):
      yield jnp.float64
  else:
    yield jnp.float32


def _divide(a: Any, b: Any) -> Array:
  """``a / b`` correctly rounded, as C++ divides.

  XLA rewrites a division by a constant, or by a broadcast scalar, into a
  multiplication by the reciprocal, one ulp off on a few percent of inputs
  (``x / 127.0`` on ~5% of float32 values). Behind an optimization barrier the
  divisor is neither, and the division stays a division.
  """
  a, b = jnp.asarray(a), jnp.asarray(b)
  shape = jnp.broadcast_shapes(a.shape, b.shape)
  dtype = jnp.result_type(a, b)
  return (jnp.broadcast_to(a.astype(dtype), shape)
          / jax.lax.optimization_barrier(jnp.broadcast_to(b.astype(dtype), shape)))


def _fma(a: Array, b: Array, c: Array) -> Array:
  """``float32(a * b + c)`` rounded once, as the FMA instructions FBGEMM uses.

  ``a * b`` of two float32s is exact in float64; the sum is rounded there and
  again to float32, which differs from one rounding only when the float64
  result lands exactly on a float32 midpoint (~2**-28 of random inputs).
  XLA usually contracts ``a * b + c`` into an FMA on CPU and GPU, but does
  not promise to; the float64 form does not depend on it.
  """
  with _wide() as wide:
    return (a.astype(wide) * b.astype(wide) + c.astype(wide)).astype(jnp.float32)


# --------------------------------------------------------------------------- weights


def _check_kernel(w: Any, what: str = "weight") -> Array:
  w = jnp.asarray(w)
  if not jnp.issubdtype(w.dtype, jnp.floating):
    raise FlatjaxInputError(f"a {what} to quantize must be floating point, got {w.dtype}")
  if w.ndim < 1:
    raise FlatjaxInputError(f"a {what} to quantize needs at least one axis, got a scalar")
  return w.astype(jnp.float32)


def weight_scale(w: Any, config: str | QuantConfig | None = None) -> Array:
  """``max(absmax / d, eps)`` over the tensor or per output channel (last axis).

  ``d`` is 127.5 for the ``full`` range (PyTorch's symmetric observers:
  ``absmax / ((qmax - qmin) / 2)``) and 127 for ``narrow``. An all-zero
  tensor or channel (a pruned one) gets ``eps`` and quantizes to zeros.
  """
  config = get_config(config)
  w = _check_kernel(w)
  axes = tuple(range(w.ndim - 1)) if config.weight_granularity == "per_channel" else None
  # initial=0: an empty kernel (a structurally pruned layer) has absmax 0, not an error.
  absmax = jnp.max(jnp.abs(w), axis=axes, initial=0.0)
  return jnp.maximum(_divide(absmax, jnp.float32(WEIGHT_RANGES[config.weight_range][2])),
                     jnp.float32(EPS))


def quantize_weight(w: Any, config: str | QuantConfig | None = None) -> QArray:
  """``clip(rint(w * (1 / scale)), qmin, qmax)`` as int8, with its scale.

  The reciprocal is taken once in float32 and multiplied, as PyTorch's
  ``quantize_per_tensor`` (FBGEMM's ``Quantize``) does: ``w / scale`` can round
  the other way at an exact half.
  """
  config = get_config(config)
  w = _check_kernel(w)
  scale = weight_scale(w, config)
  qmin, qmax = config.weight_qrange
  inverse = _divide(jnp.float32(1.0), scale)
  values = jnp.clip(jnp.rint(w * inverse), qmin, qmax).astype(jnp.int8)
  return QArray(values, scale)


def dequantize(q: QArray) -> Array:
  """``values * scale`` in float32 (the scale broadcast over the last axis)."""
  return q.values.astype(jnp.float32) * q.scale


# --------------------------------------------------------------------------- activations


def activation_qrange(reduce_range: bool = True) -> tuple[int, int]:
  """uint8 activations: [0, 255], or [0, 127] with ``reduce_range``."""
  return (0, 127) if reduce_range else (0, 255)


def choose_qparams(x: Any, reduce_range: bool = True) -> tuple[Array, Array]:
  """PyTorch's dynamic per-tensor ``(scale, zero_point)`` of ``x``.

  ``ChooseQuantizationParams`` (``aten/src/ATen/native/quantized/cpu/
  QuantUtils.h``) with ``qmin, qmax = 0, 255`` halved by ``reduce_range``,
  in float64 as there. Returns ``scale`` float32 (the value quantization
  then uses) and ``zero_point`` int32, both scalars. Equals
  ``torch._choose_qparams_per_tensor(x, reduce_range)``.
  """
  x_min, x_max = value_range(x)
  return qparams_from_range(x_min, x_max, reduce_range)


def value_range(x: Any) -> tuple[Array, Array]:
  """``(min(0, x...), max(0, x...))``: the range quantization covers, 0 included
  (FBGEMM's FindMinMax gives 0, 0 for an empty input)."""
  x = jnp.asarray(x, jnp.float32)
  # One variadic reduce: XLA makes jnp.min and jnp.max two passes over x, a
  # tenth of an int8 layer's time.
  zero = jnp.zeros((), jnp.float32)
  return jax.lax.reduce(
      (x, x), (zero, zero),
      lambda a, b: (jnp.minimum(a[0], b[0]), jnp.maximum(a[1], b[1])), tuple(range(x.ndim)))


def qparams_from_range(x_min: Any, x_max: Any, reduce_range: bool = True) -> tuple[Array, Array]:
  """:func:`choose_qparams` from the input's float32 minimum and maximum."""
  qmin, qmax = activation_qrange(reduce_range)
  f32 = jnp.float32
  lo = jnp.minimum(jnp.asarray(x_min, f32), f32(0))
  hi = jnp.maximum(jnp.asarray(x_max, f32), f32(0))
  steps = f32(qmax - qmin)
  threshold = f32(SMALL_SCALE)
  with _wide() as wide:
    scale = _divide(hi.astype(wide) - lo.astype(wide), jnp.asarray(qmax - qmin, wide))
    # FBGEMM precomputes 1/scale in float32: neither may be 0 or infinite.
    narrow = scale.astype(f32)
    degenerate = (narrow == 0) | jnp.isinf(_divide(f32(1), narrow))
    scale = jnp.where(degenerate, jnp.asarray(0.1, wide), scale)
    # Below the threshold the scale is raised to it and the range stretched
    # (in float32, as the C++ does), so the zero point stays consistent.
    small = scale < threshold.astype(wide)
    amplifier = _divide(threshold, scale.astype(f32))
    lo_small = jnp.where(lo == 0, lo, jnp.where(hi == 0, -threshold * steps, lo * amplifier))
    hi_small = jnp.where(lo == 0, threshold * steps, jnp.where(hi == 0, hi, hi * amplifier))
    lo = jnp.where(small, lo_small, lo).astype(wide)
    hi = jnp.where(small, hi_small, hi).astype(wide)
    scale = jnp.where(small, threshold.astype(wide), scale)
    # The zero point from whichever end adds the smaller terms, then nudged
    # to an integer in range (nearbyint: half to even).
    lo_steps, hi_steps = _divide(lo, scale), _divide(hi, scale)
    from_min, from_max = qmin - lo_steps, qmax - hi_steps
    err_min = abs(qmin) - jnp.abs(lo_steps)
    err_max = abs(qmax) - jnp.abs(hi_steps)
    initial = jnp.where(err_min < err_max, from_min, from_max)
    zero_point = jnp.clip(jnp.rint(initial), qmin, qmax).astype(jnp.int32)
    return scale.astype(f32), zero_point


def quantize_activation(x: Any, scale: Any, zero_point: Any) -> Array:
  """``clip(rint(fma(x, 1/scale, zero_point)), 0, 255)`` as uint8.

  FBGEMM's ``QuantizeAvx2<uint8_t, LEGACY=true>``: the zero point is added
  inside one fused multiply-add before rounding (not after, which rounds
  exact halves differently), and the clip is uint8's, whatever the range
  the scale was chosen for.
  """
  return _quantize(jnp.asarray(x, jnp.float32), _inverse(scale), zero_point)


def _inverse(scale: Any) -> Array:
  return _divide(jnp.float32(1.0), jnp.asarray(scale, jnp.float32))


def _quantize(x: Array, inverse: Array, zero_point: Any) -> Array:
  shifted = _fma(x, inverse, jnp.asarray(zero_point).astype(jnp.float32))
  return jnp.clip(jnp.rint(shifted), 0, 255).astype(jnp.uint8)


def int8_matmul(xq: Array, zero_point: Any, wq: Array) -> Array:
  """``sum_k (xq[n, k] - zero_point) * wq[k, m]`` exactly, in int32.

  ``xq - zero_point`` spans [-255, 255], too wide for int8, so the product
  is ``(xq - 128) @ wq + (128 - zero_point) * colsum(wq)``: an int8 x int8
  dot accumulated in int32 (exact while ``K * 2**14 < 2**31``) that XLA runs
  on integer units (VNNI, tensor cores) where it has them.
  """
  if xq.ndim != 2 or wq.ndim != 2 or xq.shape[1] != wq.shape[0]:
    raise FlatjaxInputError(f"int8_matmul needs [N, K] and [K, M] operands, got "
                            f"{tuple(xq.shape)} and {tuple(wq.shape)}")
  centred = (xq.astype(jnp.int32) - 128).astype(jnp.int8)
  acc = jax.lax.dot_general(centred, wq.astype(jnp.int8), (((1,), (0,)), ((), ())),
                            preferred_element_type=jnp.int32)
  colsum = jnp.sum(wq, axis=0, dtype=jnp.int32)
  return acc + (128 - jnp.asarray(zero_point, jnp.int32)) * colsum


def dense(x: Any, kernel: QArray, bias: Any | None = None,
          config: str | QuantConfig | None = None, dtype: Any | None = None,
          input_range: tuple[Any, Any] | None = None) -> Array:
  """A quantized ``nn.Dense``: ``x [..., in]`` -> ``[..., out]``.

  ``dynamic``: steps 1-5 of the module docstring over all of ``x`` at once
  (one activation scale for the whole call, as PyTorch's per-tensor dynamic
  quantization: the batch's composition, padding included, matters);
  ``input_range``, when given, is ``value_range(x)`` computed elsewhere (see
  :func:`dense_activation`), and step 1 is skipped.
  ``none``: ``x @ dequantize(kernel) + bias`` computed as ``nn.Dense`` does.
  ``dtype``: the output dtype (default: ``x``'s); the int8 path computes in
  float32 whatever it is.
  """
  config = get_config(config)
  x, features, b = _check_dense(x, kernel, bias)
  out_dtype = dtype if dtype is not None else x.dtype
  if config.activations == "none":
    w = dequantize(kernel)
    x, w = x.astype(out_dtype), w.astype(out_dtype)
    # nn.Dense's own ops, so a weight-only model is the float model run on
    # the dequantized weights.
    y = jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))
    if bias is not None:
      y = y + jnp.reshape(jnp.asarray(bias, out_dtype), (1,) * (y.ndim - 1) + (-1,))
    return y
  rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1]).astype(jnp.float32)  # no -1: K may be 0
  x_min, x_max = value_range(rows) if input_range is None else input_range
  y = int8_kernel.dense_or(_dynamic_dense, rows, *_dynamic_operands(x_min, x_max, kernel, b,
                                                                   config))
  return y.reshape(*x.shape[:-1], features).astype(out_dtype)


def dense_activation(x: Any, kernel: QArray, bias: Any | None,
                     config: str | QuantConfig | None,
                     activation: Callable[[Array], Array]) -> tuple[Array, tuple[Array, Array]]:
  """``activation(dense(x, ...))`` in float32 and its :func:`value_range`, the
  ``input_range`` of the int8 layer that reads it (``dynamic`` only).

  Where the native kernel applies ``activation`` itself with XLA's bits
  (BERT's exact GELU, :func:`flatjax.kernels.int8.gelu_matches_xla`), it does,
  and finds the range as it writes the output: one pass over the output
  instead of three. Elsewhere XLA's ops compute the same.
  """
  config = get_config(config)
  if config.activations != "dynamic":
    raise FlatjaxInputError("dense_activation quantizes activations: it needs a dynamic config")
  x, features, b = _check_dense(x, kernel, bias)
  rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1]).astype(jnp.float32)

  def on_xla(*args):
    g = activation(_dynamic_dense(*args))
    return g, jnp.stack(value_range(g))
  args = (rows, *_dynamic_operands(*value_range(rows), kernel, b, config))
  if int8_kernel.fuses(activation):
    g, bounds = int8_kernel.dense_or(on_xla, *args, gelu=True)
  else:
    g = activation(int8_kernel.dense_or(_dynamic_dense, *args))
    bounds = value_range(g)
  return g.reshape(*x.shape[:-1], features), (bounds[0], bounds[1])


def _check_dense(x: Any, kernel: QArray, bias: Any | None) -> tuple[Array, int, Array]:
  """``x`` as an array, the output features, the bias (zeros if None) in float32."""
  if not isinstance(kernel, QArray):
    raise FlatjaxInputError(f"dense needs a QArray kernel, got {type(kernel).__name__}")
  x = jnp.asarray(x)
  if kernel.values.ndim != 2 or x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
    raise FlatjaxInputError(f"input of shape {tuple(x.shape)} does not fit a kernel of shape "
                            f"{kernel.shape}")
  features = kernel.shape[1]
  if bias is not None and tuple(jnp.shape(bias)) != (features,):
    raise FlatjaxInputError(f"bias of shape {tuple(jnp.shape(bias))} does not fit "
                            f"{features} output features")
  b = jnp.zeros((features,), jnp.float32) if bias is None else jnp.asarray(bias, jnp.float32)
  return x, features, b


def _dynamic_operands(x_min: Array, x_max: Array, kernel: QArray, bias: Array,
                      config: QuantConfig) -> tuple[Array, ...]:
  """Steps 2-5's operands after ``rows``: (1 / scale, zero point, weights,
  scale x weight scale per output, bias)."""
  scale, zero_point = qparams_from_range(x_min, x_max, config.reduce_range)
  # float32, per tensor or per output channel
  multiplier = jnp.broadcast_to(scale * kernel.scale, (kernel.shape[1],))
  return _inverse(scale), zero_point, kernel.values, multiplier, bias


def _dynamic_dense(rows: Array, inverse: Array, zero_point: Array, wq: Array,
                   multiplier: Array, bias: Array) -> Array:
  """Steps 3-5 on XLA's ops: what the native kernel computes, bit for bit."""
  acc = int8_matmul(_quantize(rows, inverse, zero_point), zero_point, wq)
  return _fma(acc.astype(jnp.float32), multiplier, bias)
