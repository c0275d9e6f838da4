"""Structured pruning's export: a gated BERT turned into a smaller dense one.

CoFi (Xia et al. 2022, "Structured Pruning Learns Compact and Accurate
Models") learns gates over attention heads, whole attention blocks, FFN
neurons, whole FFN blocks and hidden dimensions (:data:`flatjax.models.bert.GATE_SHAPES`;
the model applies them through its ``gates`` input). Once the gates are fixed,
:func:`prune_model` removes every unit whose gate is 0 and folds the remaining
gate values into the weights, so that the smaller model computes exactly what
the gated one does:

* hidden gate ``z_h``: columns of the embedding tables, rows of every kernel that
  reads the hidden state and columns of every kernel that writes it, the
  LayerNorm parameters; the kept values scale the embedding tables, the
  embedding LayerNorm and every block's output (kernel columns and bias);
* head gates: the head's Q/K/V columns and attention-output rows; kept values
  scale the head's attention-output rows;
* attention block gate ``z_mha``: 0 removes the block (the layer's input passes
  through); otherwise it scales the block's output with its bias;
* FFN neuron gates and FFN block gate ``z_ffn``: likewise for the FFN.

The pooler keeps its output width (only its input rows are pruned), so the
classifier is unchanged; a QA head's input rows are pruned.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from flatjax.errors import FlatjaxInputError
from flatjax.models.bert import GATE_SHAPES, BertConfig, check_gates


def full_gates(config: BertConfig) -> dict[str, np.ndarray]:
  """Every gate at 1: the unpruned model."""
  return {name: np.ones(shape(config), np.float32) for name, shape in GATE_SHAPES.items()}


def _gate_values(config: BertConfig, gates: dict) -> dict[str, np.ndarray]:
  check_gates(config, gates)
  out = full_gates(config)
  for name, g in gates.items():
    g = np.asarray(g, np.float32)
    if not np.all(np.isfinite(g)) or np.any(g < 0):
      raise FlatjaxInputError(f"gate {name!r} has negative or non-finite values")
    out[name] = g
  return out


def remaining_units(config: BertConfig, gates: dict) -> dict[str, Any]:
  """What a gate setting keeps: hidden dims, and per layer the heads and FFN
  neurons (empty lists for a removed block), as Python lists of indices."""
  g = _gate_values(config, gates)
  layers = []
  for i in range(config.num_hidden_layers):
    attention = bool(g["mha"][i] != 0)
    ffn = bool(g["ffn"][i] != 0)
    layers.append({
        "attention": attention,
        "heads": np.flatnonzero(g["head"][i]).tolist() if attention else [],
        "ffn": ffn,
        "neurons": np.flatnonzero(g["intermediate"][i]).tolist() if ffn else [],
    })
  return {"hidden": np.flatnonzero(g["hidden"]).tolist(), "layers": layers}


def pruned_config(config: BertConfig, gates: dict) -> BertConfig:
  """The config of :func:`prune_model`'s result: what ``gates`` keep of ``config``."""
  units = remaining_units(config, gates)
  layers = units["layers"]
  return dataclasses.replace(
      config, hidden_size=len(units["hidden"]), attention_head_size=config.head_dim,
      layer_num_heads=tuple(len(layer["heads"]) for layer in layers),
      layer_intermediate_sizes=tuple(len(layer["neurons"]) for layer in layers),
      pruned_attention_layers=tuple(i for i, layer in enumerate(layers)
                                    if not layer["attention"]),
      pruned_ffn_layers=tuple(i for i, layer in enumerate(layers) if not layer["ffn"]),
      pooler_size=config.hidden_size)


def prune_model(config: BertConfig, params: dict, gates: dict) -> tuple[BertConfig, dict]:
  """The smaller dense model equal to ``config``/``params`` run with ``gates``.

  ``params``: a flatjax BERT's params (``{"bert": ..., <head>: ...}`` or a bare
  ``BertModel``'s); ``gates``: any subset of :data:`GATE_SHAPES` (concrete
  arrays; a missing group keeps everything). Returns the new config (with the
  structure fields set) and params as numpy arrays, loadable by
  ``flatjax.models.build_module(new_config, task)``.
  """
  if config.is_structurally_pruned:
    raise FlatjaxInputError("this model is already structurally pruned")
  g = _gate_values(config, gates)
  units = remaining_units(config, gates)
  if not units["hidden"]:
    raise FlatjaxInputError("the hidden gate removes every hidden dimension")
  p = {k: v for k, v in params.items()}
  bert = p["bert"] if "bert" in p else p
  hid = np.asarray(units["hidden"])
  zh = g["hidden"][hid]
  dim = config.head_dim

  def arr(x):
    return np.asarray(x, np.float32)

  def layer_norm(ln, scale=None):
    s, b = arr(ln["scale"])[hid], arr(ln["bias"])[hid]
    if scale is not None:
      s, b = s * scale, b * scale
    return {"scale": s, "bias": b}

  emb = bert["embeddings"]
  new_bert: dict[str, Any] = {"embeddings": {
      "word_embeddings": {"embedding": arr(emb["word_embeddings"]["embedding"])[:, hid] * zh},
      "position_embeddings": {
          "embedding": arr(emb["position_embeddings"]["embedding"])[:, hid] * zh},
      "token_type_embeddings": {
          "embedding": arr(emb["token_type_embeddings"]["embedding"])[:, hid] * zh},
      # The gated model normalises (x * z_h) and multiplies the result by z_h again.
      "LayerNorm": layer_norm(emb["LayerNorm"], zh),
  }}
  new_layers: dict[str, Any] = {}
  for i in range(config.num_hidden_layers):
    src = bert["encoder"]["layer"][str(i)]
    info = units["layers"][i]
    layer: dict[str, Any] = {}
    if info["attention"]:
      heads = info["heads"]
      cols = np.concatenate([np.arange(h * dim, (h + 1) * dim) for h in heads]).astype(int) \
          if heads else np.zeros(0, int)
      att = src["attention"]
      proj = {name: {"kernel": arr(att["self"][name]["kernel"])[hid][:, cols],
                     "bias": arr(att["self"][name]["bias"])[cols]}
              for name in ("query", "key", "value")}
      head_scale = np.repeat(g["head"][i][heads], dim) if heads else np.zeros(0, np.float32)
      out_scale = g["mha"][i] * zh
      out = att["output"]
      layer["attention"] = {
          "self": proj,
          "output": {
              "dense": {"kernel": arr(out["dense"]["kernel"])[cols][:, hid]
                        * head_scale[:, None] * out_scale[None, :],
                        "bias": arr(out["dense"]["bias"])[hid] * out_scale},
              "LayerNorm": layer_norm(out["LayerNorm"]),
          },
      }
    if info["ffn"]:
      neurons = np.asarray(info["neurons"], int)
      out_scale = g["ffn"][i] * zh
      layer["intermediate"] = {"dense": {
          "kernel": arr(src["intermediate"]["dense"]["kernel"])[hid][:, neurons],
          "bias": arr(src["intermediate"]["dense"]["bias"])[neurons]}}
      layer["output"] = {
          "dense": {"kernel": arr(src["output"]["dense"]["kernel"])[neurons][:, hid]
                    * g["intermediate"][i][neurons][:, None] * out_scale[None, :],
                    "bias": arr(src["output"]["dense"]["bias"])[hid] * out_scale},
          "LayerNorm": layer_norm(src["output"]["LayerNorm"]),
      }
    new_layers[str(i)] = layer
  new_bert["encoder"] = {"layer": new_layers}
  if "pooler" in bert:
    new_bert["pooler"] = {"dense": {"kernel": arr(bert["pooler"]["dense"]["kernel"])[hid],
                                    "bias": arr(bert["pooler"]["dense"]["bias"])}}

  new_config = pruned_config(config, gates)
  if "bert" not in p:
    return new_config, new_bert
  new_params: dict[str, Any] = {"bert": new_bert}
  for head, value in p.items():
    if head == "bert":
      continue
    if head == "qa_outputs":  # reads the (pruned) sequence output
      new_params[head] = {"kernel": arr(value["kernel"])[hid], "bias": arr(value["bias"])}
    else:  # the classifier reads the pooler, whose width is kept
      new_params[head] = {k: arr(v) for k, v in value.items()}
  return new_config, new_params


def encoder_params(config: BertConfig) -> int:
  """Weights of the encoder's prunable matrices (Q, K, V, attention output,
  FFN in and out; no biases, LayerNorms, embeddings or heads), CoFi's model
  size for its sparsity: of a standard or a pruned config alike."""
  dim = config.head_dim
  total = 0
  for i in range(config.num_hidden_layers):
    if i not in config.pruned_attention_layers:
      total += 4 * config.hidden_size * config.heads_in_layer(i) * dim
    if i not in config.pruned_ffn_layers:
      total += 2 * config.hidden_size * config.intermediate_in_layer(i)
  return total
