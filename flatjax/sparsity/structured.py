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
  """The config of :func:`prune_model`'s result: what ``gates`` keep of ``config``
  (:func:`as_standard` where that is a standard BERT's)."""
  units = remaining_units(config, gates)
  layers = units["layers"]
  return as_standard(dataclasses.replace(
      config, hidden_size=len(units["hidden"]), attention_head_size=config.head_dim,
      layer_num_heads=tuple(len(layer["heads"]) for layer in layers),
      layer_intermediate_sizes=tuple(len(layer["neurons"]) for layer in layers),
      pruned_attention_layers=tuple(i for i, layer in enumerate(layers)
                                    if not layer["attention"]),
      pruned_ffn_layers=tuple(i for i, layer in enumerate(layers) if not layer["ffn"]),
      pooler_size=config.hidden_size))


def as_standard(config: BertConfig) -> BertConfig:
  """A pruned config written as a standard BERT's where it is one: every layer keeps
  every head and one FFN width (> 0), no block is removed, the hidden size is whole
  (so the head size is ``hidden / heads`` and the pooler as wide). Such a model loads
  in transformers' ``BertFor...`` classes; any other structure is returned as it is."""
  if not config.is_structurally_pruned:
    return config
  heads = set(config.layer_num_heads or (config.num_attention_heads,))
  widths = set(config.layer_intermediate_sizes or (config.intermediate_size,))
  standard = (heads == {config.num_attention_heads} and len(widths) == 1 and min(widths) > 0
              and not config.pruned_attention_layers and not config.pruned_ffn_layers
              and config.head_dim * config.num_attention_heads == config.hidden_size
              and config.pooler_width == config.hidden_size)
  if not standard:
    return config
  return dataclasses.replace(config, intermediate_size=widths.pop(), attention_head_size=None,
                             layer_num_heads=None, layer_intermediate_sizes=None,
                             pruned_attention_layers=(), pruned_ffn_layers=(),
                             pooler_size=None)


def _arr(x) -> np.ndarray:
  return np.asarray(x, np.float32)


def _layer_norm(ln: dict, hid: np.ndarray, scale=None) -> dict:
  s, b = _arr(ln["scale"])[hid], _arr(ln["bias"])[hid]
  if scale is not None:
    s, b = s * scale, b * scale
  return {"scale": s, "bias": b}


def _embeddings(emb: dict, hid: np.ndarray, zh: np.ndarray) -> dict:
  kept = {name: {"embedding": _arr(emb[name]["embedding"])[:, hid] * zh}
          for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")}
  # The gated model normalises (x * z_h) and multiplies the result by z_h again.
  return {**kept, "LayerNorm": _layer_norm(emb["LayerNorm"], hid, zh)}


def _attention(att: dict, heads: list[int], dim: int, hid: np.ndarray, head_gates: np.ndarray,
               out_scale: np.ndarray) -> dict:
  """The kept heads' query/key/value columns and output rows, the gates folded in."""
  cols = (np.concatenate([np.arange(h * dim, (h + 1) * dim) for h in heads]).astype(int)
          if heads else np.zeros(0, int))
  proj = {name: {"kernel": _arr(att["self"][name]["kernel"])[hid][:, cols],
                 "bias": _arr(att["self"][name]["bias"])[cols]}
          for name in ("query", "key", "value")}
  head_scale = np.repeat(head_gates[heads], dim) if heads else np.zeros(0, np.float32)
  out = att["output"]
  return {"self": proj, "output": {
      "dense": {"kernel": _arr(out["dense"]["kernel"])[cols][:, hid]
                * head_scale[:, None] * out_scale[None, :],
                "bias": _arr(out["dense"]["bias"])[hid] * out_scale},
      "LayerNorm": _layer_norm(out["LayerNorm"], hid)}}


def _ffn(src: dict, neurons: np.ndarray, hid: np.ndarray, neuron_gates: np.ndarray,
         out_scale: np.ndarray) -> dict:
  """The kept neurons' intermediate columns and output rows, the gates folded in."""
  return {
      "intermediate": {"dense": {
          "kernel": _arr(src["intermediate"]["dense"]["kernel"])[hid][:, neurons],
          "bias": _arr(src["intermediate"]["dense"]["bias"])[neurons]}},
      "output": {
          "dense": {"kernel": _arr(src["output"]["dense"]["kernel"])[neurons][:, hid]
                    * neuron_gates[neurons][:, None] * out_scale[None, :],
                    "bias": _arr(src["output"]["dense"]["bias"])[hid] * out_scale},
          "LayerNorm": _layer_norm(src["output"]["LayerNorm"], hid)}}


def _task_heads(params: dict, hid: np.ndarray) -> dict:
  out = {}
  for head, value in params.items():
    if head == "bert":
      continue
    if head == "qa_outputs":  # reads the (pruned) sequence output
      out[head] = {"kernel": _arr(value["kernel"])[hid], "bias": _arr(value["bias"])}
    else:  # the classifier reads the pooler, whose width is kept
      out[head] = {k: _arr(v) for k, v in value.items()}
  return out


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
  bert = params["bert"] if "bert" in params else params
  hid = np.asarray(units["hidden"])
  zh = g["hidden"][hid]
  new_bert: dict[str, Any] = {"embeddings": _embeddings(bert["embeddings"], hid, zh)}
  new_layers: dict[str, Any] = {}
  for i in range(config.num_hidden_layers):
    src, info, layer = bert["encoder"]["layer"][str(i)], units["layers"][i], {}
    if info["attention"]:
      layer["attention"] = _attention(src["attention"], info["heads"], config.head_dim, hid,
                                      g["head"][i], g["mha"][i] * zh)
    if info["ffn"]:
      layer.update(_ffn(src, np.asarray(info["neurons"], int), hid, g["intermediate"][i],
                        g["ffn"][i] * zh))
    new_layers[str(i)] = layer
  new_bert["encoder"] = {"layer": new_layers}
  if "pooler" in bert:
    new_bert["pooler"] = {"dense": {"kernel": _arr(bert["pooler"]["dense"]["kernel"])[hid],
                                    "bias": _arr(bert["pooler"]["dense"]["bias"])}}
  new_config = pruned_config(config, gates)
  if "bert" not in params:
    return new_config, new_bert
  return new_config, {"bert": new_bert, **_task_heads(params, hid)}


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
