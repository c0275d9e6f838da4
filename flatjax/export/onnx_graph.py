"""A flatjax BERT as an ONNX graph: float32, or int8 from flatjax's own quantized weights.

:func:`to_onnx` writes the network of :mod:`flatjax.models.bert` node by node with the
``onnx`` package (opset 17: ``LayerNormalization``, ``Erf``), so any ONNX runtime runs a
flatjax model without JAX, Python or flatjax. Every structure flatjax makes is covered:
sequence classification and regression (``logits``), span extraction (``start_logits``,
``end_logits``), and structurally pruned models (CoFi's exports: per-layer head counts and
FFN widths, layers whose attention or FFN block is gone, a pruned hidden size and pooler).
Inputs are ``input_ids``, ``attention_mask`` and ``token_type_ids``, int64 ``[batch,
length]`` with both axes dynamic.

A quantized model (:class:`flatjax.quant.model.QuantizedParams`) keeps its int8 kernels
and scales as they are. With dynamic activations each dense layer is PyTorch's dynamic
recipe (:mod:`flatjax.quant.int8`) in ONNX operators: the input's range widened to hold 0,
the scale over 127 steps (FBGEMM's reduced range), the zero point from whichever end adds
the smaller terms, ``clip(round(x / scale + zero_point), 0, 255)`` as uint8, then
``MatMulInteger`` (uint8 x int8, exact in int32) scaled back to float32 and the bias added.
flatjax computes the scale and zero point in float64 and fuses two multiply-adds; here
they are float32 operators, so a rare activation rounds one step differently. Weight-only
schemes run the dequantized kernels in float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flatjax.data.tasks import TaskSpec
from flatjax.errors import FlatjaxInputError
from flatjax.models.bert import MODEL_INPUTS, BertConfig
from flatjax.quant import int8
from flatjax.quant.int8 import QArray, QuantConfig

OPSET = 17
#: The activations ONNX graphs may use (BertConfig.hidden_act names).
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh")


def require_onnx():
  """The ``onnx`` module, or a one-line error saying how to install it."""
  try:
    import onnx
  except ImportError:
    raise FlatjaxInputError("ONNX export needs the onnx package: pip install "
                            "'flatjax[export]'") from None
  return onnx


class _Graph:
  """Nodes and initializers, each value named once."""

  def __init__(self, onnx):
    self.onnx, self.nodes, self.initializers, self._count = onnx, [], [], 0

  def name(self, hint: str) -> str:
    self._count += 1
    return f"{hint}_{self._count}"

  def const(self, value: Any, hint: str = "const", dtype=None) -> str:
    name = self.name(hint)
    array = np.asarray(value, dtype=dtype)
    self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
    return name

  def op(self, op_type: str, *inputs: str, hint: str | None = None, **attributes) -> str:
    out = self.name(hint or op_type.lower())
    self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attributes))
    return out


def _np(x: Any) -> np.ndarray:
  return np.asarray(x, np.float32)


def _dense(g: _Graph, x: str, p: dict, quant: QuantConfig | None, hint: str) -> str:
  """``x @ kernel + bias`` (a flatjax ``nn.Dense``), int8 where the kernel is a QArray."""
  kernel, bias = p["kernel"], p.get("bias")
  if not isinstance(kernel, QArray):
    y = g.op("MatMul", x, g.const(_np(kernel), f"{hint}.kernel"), hint=hint)
  elif quant.activations == "none":
    y = g.op("MatMul", x, g.const(_np(int8.dequantize(kernel)), f"{hint}.kernel"), hint=hint)
  else:
    y = _int8_matmul(g, x, kernel, hint)
  return y if bias is None else g.op("Add", y, g.const(_np(bias), f"{hint}.bias"))


def _int8_matmul(g: _Graph, x: str, kernel: QArray, hint: str) -> str:
  """PyTorch's dynamic int8 ``x @ W`` (:func:`flatjax.quant.int8.dense`, reduced range),
  float32 in and out; the activation range is the whole input's, as there."""
  f = lambda v: g.const(np.float32(v))  # noqa: E731
  qmin, qmax = 0.0, 127.0
  lo = g.op("Min", g.op("ReduceMin", x, keepdims=0), f(0.0))
  hi = g.op("Max", g.op("ReduceMax", x, keepdims=0), f(0.0))
  scale = g.op("Div", g.op("Sub", hi, lo), f(qmax - qmin))
  scale = g.op("Where", g.op("Equal", scale, f(0.0)), f(0.1), scale)
  scale = g.op("Max", scale, f(int8.SMALL_SCALE))
  lo_steps, hi_steps = g.op("Div", lo, scale), g.op("Div", hi, scale)
  from_min, from_max = g.op("Sub", f(qmin), lo_steps), g.op("Sub", f(qmax), hi_steps)
  err_min = g.op("Sub", f(qmin), g.op("Abs", lo_steps))
  err_max = g.op("Sub", f(qmax), g.op("Abs", hi_steps))
  zero = g.op("Where", g.op("Less", err_min, err_max), from_min, from_max)
  zero = g.op("Clip", g.op("Round", zero), f(qmin), f(qmax))
  shifted = g.op("Add", g.op("Mul", x, g.op("Reciprocal", scale)), zero)
  q = g.op("Cast", g.op("Clip", g.op("Round", shifted), f(0.0), f(255.0)),
           to=g.onnx.TensorProto.UINT8)
  acc = g.op("MatMulInteger", q, g.const(np.asarray(kernel.values, np.int8), f"{hint}.int8"),
             g.op("Cast", zero, to=g.onnx.TensorProto.UINT8), g.const(np.int8(0)), hint=hint)
  multiplier = g.op("Mul", scale, g.const(_np(kernel.scale), f"{hint}.scale"))
  return g.op("Mul", g.op("Cast", acc, to=g.onnx.TensorProto.FLOAT), multiplier)


def _layer_norm(g: _Graph, x: str, p: dict, eps: float, hint: str) -> str:
  return g.op("LayerNormalization", x, g.const(_np(p["scale"]), f"{hint}.scale"),
              g.const(_np(p["bias"]), f"{hint}.bias"), axis=-1, epsilon=float(eps), hint=hint)


def _activation(g: _Graph, x: str, name: str) -> str:
  if name == "gelu":  # x/2 (1 + erf(x / sqrt 2)), as flatjax and PyTorch
    erf = g.op("Erf", g.op("Mul", x, g.const(np.float32(1.0 / math.sqrt(2.0)))))
    return g.op("Mul", g.op("Mul", x, g.const(np.float32(0.5))),
                g.op("Add", erf, g.const(np.float32(1.0))))
  if name in ("gelu_new", "gelu_pytorch_tanh"):
    inner = g.op("Mul", g.op("Add", x, g.op("Mul", g.const(np.float32(0.044715)),
                                            g.op("Pow", x, g.const(np.float32(3.0))))),
                 g.const(np.float32(math.sqrt(2.0 / math.pi))))
    return g.op("Mul", g.op("Mul", x, g.const(np.float32(0.5))),
                g.op("Add", g.op("Tanh", inner), g.const(np.float32(1.0))))
  if name == "relu":
    return g.op("Relu", x)
  if name == "tanh":
    return g.op("Tanh", x)
  raise FlatjaxInputError(f"hidden_act {name!r} has no ONNX export yet; known: "
                          f"{', '.join(ACTIVATIONS)}")


def _embeddings(g: _Graph, p: dict, config: BertConfig, ids: str, types: str) -> str:
  length = g.op("Gather", g.op("Shape", ids), g.const(np.int64(1)), axis=0)
  positions = g.op("Range", g.const(np.int64(0)), length, g.const(np.int64(1)))
  table = lambda name: g.const(_np(p[name]["embedding"]), name)  # noqa: E731
  x = g.op("Add", g.op("Gather", table("word_embeddings"), ids, axis=0),
           g.op("Gather", table("position_embeddings"), positions, axis=0))
  x = g.op("Add", x, g.op("Gather", table("token_type_embeddings"), types, axis=0))
  return _layer_norm(g, x, p["LayerNorm"], config.layer_norm_eps, "embeddings.LayerNorm")


def _attention_bias(g: _Graph, mask: str) -> str:
  """[B, L] 1/0 -> additive [B, 1, 1, L]: 0 kept, float32's minimum masked (flatjax's)."""
  keep = g.op("Cast", g.op("Unsqueeze", mask, g.const(np.asarray([1, 2], np.int64))),
              to=g.onnx.TensorProto.BOOL)
  return g.op("Where", keep, g.const(np.float32(0.0)),
              g.const(np.float32(np.finfo(np.float32).min)))


def _self_attention(g: _Graph, x: str, bias: str, p: dict, heads: int, dim: int,
                    quant, hint: str) -> str:
  split = g.const(np.asarray([0, 0, heads, dim], np.int64))

  def project(name, perm):
    y = _dense(g, x, p[name], quant, f"{hint}.{name}")
    return g.op("Transpose", g.op("Reshape", y, split), perm=perm)

  q = g.op("Mul", project("query", [0, 2, 1, 3]), g.const(np.float32(1.0 / math.sqrt(dim))))
  scores = g.op("Add", g.op("MatMul", q, project("key", [0, 2, 3, 1])), bias)
  probs = g.op("Softmax", scores, axis=-1)
  context = g.op("MatMul", probs, project("value", [0, 2, 1, 3]))
  return g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]),
              g.const(np.asarray([0, 0, heads * dim], np.int64)))


def _residual_block(g: _Graph, inner: str | None, residual: str, p: dict, eps: float,
                    quant, hint: str) -> str:
  """LayerNorm(dense(inner) + residual); a block with no units left (``inner`` None)
  adds only the dense layer's bias, as flatjax's zero-width dense does."""
  if inner is None:
    y = g.op("Add", residual, g.const(_np(p["dense"]["bias"]), f"{hint}.dense.bias"))
  else:
    y = g.op("Add", _dense(g, inner, p["dense"], quant, f"{hint}.dense"), residual)
  return _layer_norm(g, y, p["LayerNorm"], eps, f"{hint}.LayerNorm")


def _layer(g: _Graph, x: str, bias: str, p: dict, config: BertConfig, i: int, quant) -> str:
  hint, eps = f"layer.{i}", config.layer_norm_eps
  if i not in config.pruned_attention_layers:
    heads = config.heads_in_layer(i)
    att = p["attention"]
    context = (_self_attention(g, x, bias, att["self"], heads, config.head_dim, quant,
                               f"{hint}.attention.self") if heads else None)
    x = _residual_block(g, context, x, att["output"], eps, quant, f"{hint}.attention.output")
  if i in config.pruned_ffn_layers:
    return x
  hidden = None
  if config.intermediate_in_layer(i):
    hidden = _activation(g, _dense(g, x, p["intermediate"]["dense"], quant,
                                   f"{hint}.intermediate.dense"), config.hidden_act)
  return _residual_block(g, hidden, x, p["output"], eps, quant, f"{hint}.output")


def _split_params(params: Any) -> tuple[dict, QuantConfig | None]:
  from flatjax.quant.model import QuantizedParams
  if isinstance(params, QuantizedParams):
    return params.params, params.config
  return params, None


def to_onnx(params: Any, config: BertConfig, task: TaskSpec, name: str = "flatjax-bert"):
  """The ONNX model (``onnx.ModelProto``) of a flatjax BERT for ``task``.

  Args:
    params: the model's params (float), or a :class:`~flatjax.quant.model.QuantizedParams`.
    config: its architecture (a structurally pruned one included).
    task: what its head computes (classification or regression: ``logits``; span:
      ``start_logits`` and ``end_logits``).
    name: the graph's name.

  Raises:
    FlatjaxInputError: without the onnx package, or an activation it cannot write.
  """
  onnx = require_onnx()
  p, quant = _split_params(params)
  g = _Graph(onnx)
  ids, mask, types = MODEL_INPUTS
  bert = p["bert"]
  x = _embeddings(g, bert["embeddings"], config, ids, types)
  bias = _attention_bias(g, mask)
  layers = bert["encoder"]["layer"]
  for i in range(config.num_hidden_layers):
    x = _layer(g, x, bias, layers[str(i)], config, i, quant)
  dynamic = ["batch", "length"]
  if task.kind == "span":
    logits = _dense(g, x, p["qa_outputs"], quant, "qa_outputs")
    start, end = g.name("start"), g.name("end")
    g.nodes.append(onnx.helper.make_node("Split", [logits, g.const(np.asarray([1, 1], np.int64))],
                                         [start, end], axis=-1))
    squeeze = g.const(np.asarray([-1], np.int64))
    outputs = {"start_logits": g.op("Squeeze", start, squeeze),
               "end_logits": g.op("Squeeze", end, squeeze)}
    shapes = {k: dynamic for k in outputs}
  else:
    first = g.op("Gather", x, g.const(np.int64(0)), axis=1)
    pooled = g.op("Tanh", _dense(g, first, bert["pooler"]["dense"], quant, "pooler.dense"))
    outputs = {"logits": _dense(g, pooled, p["classifier"], quant, "classifier")}
    shapes = {"logits": ["batch", task.num_labels]}
  for out_name, value in outputs.items():
    g.nodes.append(onnx.helper.make_node("Identity", [value], [out_name]))
  value_info = onnx.helper.make_tensor_value_info
  graph = onnx.helper.make_graph(
      g.nodes, name,
      [value_info(k, onnx.TensorProto.INT64, dynamic) for k in MODEL_INPUTS],
      [value_info(k, onnx.TensorProto.FLOAT, shapes[k]) for k in outputs],
      g.initializers)
  model = onnx.helper.make_model(graph, producer_name="flatjax",
                                 opset_imports=[onnx.helper.make_opsetid("", OPSET)])
  model.ir_version = min(model.ir_version, 9)  # onnxruntimes a few releases old read it
  onnx.checker.check_model(model)
  return model
