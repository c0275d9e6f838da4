"""A flatjax BERT with int8 dense layers: quantized params and the forward pass.

``quantize_params`` quantizes every dense kernel ahead of time (the Q, K, V,
attention-output, intermediate and output kernels of each layer, the pooler
and the task head: PyTorch's ``quantize_dynamic(model, {nn.Linear})`` set)
into :class:`~flatjax.quant.int8.QArray` leaves; embeddings, biases and
LayerNorms stay float32, as in PyTorch. ``quantized_apply`` runs any flatjax
BERT module (classification, regression, QA, structurally pruned configs)
on them: ``flax.linen.intercept_methods`` replaces ``nn.Dense.__call__`` by
:func:`flatjax.quant.int8.dense` for each dense whose kernel is a QArray, so
``flatjax.models.bert`` is unchanged and every other op is the float model's.
Activations are quantized per call as the config says.

The forward is jittable; ``make_quantized_eval_step`` is
``flatjax.train.steps.make_eval_step``'s quantized twin, for
``flatjax.train.evaluation.evaluate``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from flatjax.errors import FlatjaxInputError
from flatjax.quant import int8
from flatjax.quant.int8 import QArray, QuantConfig
from flatjax.sparsity.masks import apply_mask, is_none, path_str, resolve_scope
from flatjax.models import bert

#: What ``quantize_dynamic(model, {nn.Linear})`` quantizes: every dense kernel.
QUANT_SCOPE: tuple[str, ...] = (r"(^|/)kernel$",)


@struct.dataclass
class QuantizedParams:
  """A params tree whose quantized kernels are QArrays, and how it was quantized.

  ``params`` has the float params' structure, a :class:`QArray` in place of
  each quantized kernel; ``config`` (static) says how the forward quantizes
  activations. A pytree: it passes through ``jit`` like params do.
  """
  params: Any
  config: QuantConfig = struct.field(pytree_node=False)


def _is_qarray(x: Any) -> bool:
  return isinstance(x, QArray)


def quantize_params(params: Any, config: str | QuantConfig | None = None,
                    scope: str | Iterable[str] | None = None) -> QuantizedParams:
  """Quantizes the kernels in ``scope`` (default :data:`QUANT_SCOPE`: all of them).

  Args:
    params: a flatjax BERT's float params.
    config: a :class:`QuantConfig` or a name from ``int8.CONFIGS`` (default
      ``"dynamic"``, PyTorch's recipe).
    scope: regular expressions on ``/``-joined param paths (see
      ``flatjax.sparsity.masks.resolve_scope``); every match must be a 2-D
      ``[in, out]`` dense kernel.

  Returns:
    :class:`QuantizedParams`; every leaf outside the scope is passed through
    unchanged (the same array).
  """
  config = int8.get_config(config)
  if isinstance(params, QuantizedParams) or any(
      _is_qarray(x) for x in jax.tree.leaves(params, is_leaf=_is_qarray)):
    raise FlatjaxInputError("these params are already quantized")
  patterns = [re.compile(p) for p in (QUANT_SCOPE if scope is None else resolve_scope(scope))]
  found = []

  def quantize(path, leaf):
    name = path_str(path)
    if not any(p.search(name) for p in patterns):
      return leaf
    if jnp.ndim(leaf) != 2:
      raise FlatjaxInputError(f"{name} has shape {tuple(jnp.shape(leaf))}; only 2-D dense "
                              "kernels can be quantized")
    found.append(name)
    return int8.quantize_weight(leaf, config)
  tree = jax.tree_util.tree_map_with_path(quantize, params)
  if not found:
    raise FlatjaxInputError(f"quantization scope {[p.pattern for p in patterns]} matches no "
                            "parameter")
  return QuantizedParams(tree, config)


def dequantize_params(qparams: QuantizedParams) -> Any:
  """The float params the quantized ones stand for: each QArray -> ``values * scale``."""
  _check_quantized(qparams)
  return jax.tree.map(lambda x: int8.dequantize(x) if _is_qarray(x) else x, qparams.params,
                      is_leaf=_is_qarray)


def quantized_leaves(qparams: QuantizedParams) -> list[tuple[str, QArray]]:
  """``(path, QArray)`` for every quantized kernel, in flattened order."""
  _check_quantized(qparams)
  flat = jax.tree_util.tree_flatten_with_path(qparams.params, is_leaf=_is_qarray)[0]
  return [(path_str(p), q) for p, q in flat if _is_qarray(q)]


def mask_quantized(qparams: QuantizedParams, mask: Any | None) -> QuantizedParams:
  """Zeroes the masked-out weights (a pruning mask shaped like the float params).

  Pruned int8 weights become 0; scales are kept (a kernel quantized after
  masking has the same scale whenever its largest weight survives, which
  magnitude pruning guarantees).
  """
  _check_quantized(qparams)
  if mask is None:
    return qparams

  def apply(m, p):
    if m is None:
      return p
    if _is_qarray(p):
      return p.replace(values=jnp.where(m, p.values, jnp.zeros_like(p.values)))
    return jnp.where(m, p, jnp.zeros_like(p))
  return qparams.replace(params=jax.tree.map(apply, mask, qparams.params, is_leaf=is_none))


def _check_quantized(qparams: Any) -> None:
  if not isinstance(qparams, QuantizedParams):
    raise FlatjaxInputError(f"expected QuantizedParams (from quantize_params), got "
                            f"{type(qparams).__name__}")


def dense_interceptor(config: QuantConfig) -> Callable:
  """A ``flax.linen.intercept_methods`` interceptor running each ``nn.Dense``
  whose kernel is a QArray as :func:`flatjax.quant.int8.dense`; any other
  module or method (and a dense with a float kernel) runs unchanged.

  With dynamic activations, an FFN's intermediate block (dense, then the
  activation, no gate) runs as :func:`flatjax.quant.int8.dense_activation`,
  and the output block's dense that reads it takes the range found there
  instead of reducing its input again: the same numbers, two passes fewer.
  """
  # The last intermediate output and its range: the output block that is
  # handed that very array gives the range to its first dense.
  ffn = {"output": None, "range": None, "pending": None}

  def intercept(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    if isinstance(module, bert.BertIntermediate) and config.activations == "dynamic":
      fused = _intermediate(module, config, *args, **kwargs)
      if fused is None:
        return next_fun(*args, **kwargs)
      ffn["output"], ffn["range"] = fused
      return ffn["output"]
    if isinstance(module, bert.BertSelfOutput) and args and args[0] is ffn["output"]:
      ffn["pending"] = ffn["range"]
      try:
        return next_fun(*args, **kwargs)
      finally:
        ffn["pending"] = None
    if not isinstance(module, nn.Dense):
      return next_fun(*args, **kwargs)
    input_range, ffn["pending"] = ffn["pending"], None
    kernel = module.get_variable("params", "kernel")
    if not _is_qarray(kernel):
      return next_fun(*args, **kwargs)
    x = args[0] if args else kwargs["inputs"]
    bias = module.get_variable("params", "bias") if module.use_bias else None
    dtype = module.dtype if module.dtype is not None else x.dtype
    return int8.dense(x, kernel, bias, config, dtype=dtype, input_range=input_range)
  return intercept


def _intermediate(module: bert.BertIntermediate, config: QuantConfig, x: jax.Array,
                  neuron_gate: jax.Array | None = None) -> tuple[jax.Array, Any] | None:
  """``BertIntermediate`` as one :func:`int8.dense_activation` and its output's
  range, or None where it is not that (a gate, a float kernel, another dtype)."""
  params = module.variables.get("params", {}).get("dense", {})
  kernel = params.get("kernel")
  if neuron_gate is not None or not _is_qarray(kernel) or module.dtype != jnp.float32:
    return None
  activation = bert.ACTIVATIONS[module.config.hidden_act]
  return int8.dense_activation(x, kernel, params.get("bias"), config, activation)


def quantized_apply(module: nn.Module, qparams: QuantizedParams, *args, **kwargs) -> Any:
  """``module.apply({"params": ...}, *args, **kwargs)`` with int8 dense layers.

  ``module``: any flatjax BERT (``build_module(config, task)``, pruned
  configs included); ``qparams``: from :func:`quantize_params` (or
  ``flatjax.quant.export.load_quantized``). Jittable; activations are
  quantized per dense call as ``qparams.config`` says: with ``dynamic``, one
  scale for the whole call, so (as in PyTorch) an example's outputs depend a
  little on the rest of its batch, padding rows included.
  """
  _check_quantized(qparams)
  with nn.intercept_methods(dense_interceptor(qparams.config)):
    return module.apply({"params": qparams.params}, *args, **kwargs)


def make_quantized_eval_step(module: nn.Module,
                             config: str | QuantConfig | None = None) -> Callable:
  """``eval_step(params_or_qparams, mask, batch) -> {name: logits}``, dropout off.

  The signature and outputs of ``flatjax.train.steps.make_eval_step``, so
  ``flatjax.train.evaluation.evaluate(jax.jit(step), params, mask, split)``
  scores the quantized model. Float params are masked, then quantized with
  ``config`` inside the step (quantize once with :func:`quantize_params` to
  save that work per batch); :class:`QuantizedParams` must have been
  quantized with ``config`` and are masked with :func:`mask_quantized`.

  Each batch's activations get their own scales, so as in PyTorch the
  logits of an example depend slightly on the batch it is in.
  """
  config = int8.get_config(config)

  def eval_step(params: Any, mask: Any, batch: dict) -> dict:
    if isinstance(params, QuantizedParams):
      if params.config != config:
        raise FlatjaxInputError(f"these params were quantized with {params.config.name!r}, "
                                f"the eval step with {config.name!r}")
      qparams = mask_quantized(params, mask)
    else:
      qparams = quantize_params(apply_mask(params, mask), config)
    out = quantized_apply(module, qparams, *(batch[k] for k in bert.MODEL_INPUTS),
                          deterministic=True)
    return {k: v for k, v in out.items() if k.endswith("logits")}
  return eval_step
