"""BERT in Flax, numerically the network of Hugging Face's PyTorch ``BertModel``.

The model is a pure function of ``(params, batch)``: ``module.apply({"params":
params}, input_ids, attention_mask, token_type_ids, ...)``. Parameter paths
mirror the Hugging Face module names, e.g.
``bert/encoder/layer/3/attention/self/query/kernel``, so pruning scopes,
sharding rules and checkpoint conversion are written against names.

Dropout draws from the ``"dropout"`` rng collection and is off when
``deterministic=True``. ``dtype`` is the compute dtype (``bfloat16`` for mixed
precision); parameters, LayerNorm statistics and the softmax stay in float32.
``head_gates`` (``[num_layers, num_heads]``, ones by default) scales each
head's attention probabilities, like Hugging Face's ``head_mask``. ``gates``
generalises it for structured pruning (CoFi, Xia et al. 2022): a dict with any
of ``head`` [L, H], ``mha`` [L] (whole attention blocks), ``intermediate``
[L, F] (FFN neurons), ``ffn`` [L] (whole FFN blocks) and ``hidden`` [H_model]
(hidden dimensions); see :data:`GATE_SHAPES`.

Gate semantics (CoFi's): a block gate scales the block's output (its bias
included) and a block whose gate is exactly 0 is skipped, the residual passing
through unchanged; the hidden gate scales the embeddings and every block's
output, and LayerNorm statistics are taken over the dimensions whose hidden
gate is nonzero. The model is then exactly a smaller dense one:
:func:`flatjax.sparsity.structured.prune_model` builds it, and the config
fields ``attention_head_size``, ``layer_num_heads``,
``layer_intermediate_sizes``, ``pruned_attention_layers``, ``pruned_ffn_layers``
and ``pooler_size`` describe such a model (all unset for a standard BERT).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flatjax.errors import FlatjaxInputError
from flatjax.kernels import attention

Array = jax.Array


# The modules' inputs, in the order their ``__call__`` takes them.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Compute dtypes by name (params stay float32).
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The architecture fields of a Hugging Face ``BertConfig``."""
  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0
  classifier_dropout: float | None = None
  # A structurally pruned model (flatjax.sparsity.structured.prune_model); None / ()
  # for a standard BERT. Per layer: kept heads and FFN neurons (0 allowed: the
  # block keeps its output bias and LayerNorm); layers whose whole attention or
  # FFN block is removed (the residual passes through); the pooler's output
  # width when the hidden size was pruned.
  attention_head_size: int | None = None
  layer_num_heads: tuple[int, ...] | None = None
  layer_intermediate_sizes: tuple[int, ...] | None = None
  pruned_attention_layers: tuple[int, ...] = ()
  pruned_ffn_layers: tuple[int, ...] = ()
  pooler_size: int | None = None

  def __post_init__(self):
    for name in _TUPLE_FIELDS:  # JSON gives lists; the module hashes its config
      value = getattr(self, name)
      if value is not None and not isinstance(value, tuple):
        object.__setattr__(self, name, tuple(int(v) for v in value))
    if self.attention_head_size is None and self.hidden_size % self.num_attention_heads:
      raise FlatjaxInputError(
          f"hidden_size {self.hidden_size} is not a multiple of "
          f"num_attention_heads {self.num_attention_heads}")
    if self.hidden_act not in ACTIVATIONS:
      raise FlatjaxInputError(
          f"hidden_act {self.hidden_act!r} is not supported; use one of {sorted(ACTIVATIONS)}")
    n = self.num_hidden_layers
    for name in ("layer_num_heads", "layer_intermediate_sizes"):
      value = getattr(self, name)
      if value is not None and (len(value) != n or min(value, default=0) < 0):
        raise FlatjaxInputError(f"{name} needs {n} non-negative sizes, got {list(value)}")
    for name in ("pruned_attention_layers", "pruned_ffn_layers"):
      if any(not 0 <= i < n for i in getattr(self, name)):
        raise FlatjaxInputError(f"{name} {list(getattr(self, name))} has layers outside 0..{n - 1}")

  @property
  def head_dim(self) -> int:
    if self.attention_head_size is not None:
      return self.attention_head_size
    return self.hidden_size // self.num_attention_heads

  def heads_in_layer(self, i: int) -> int:
    return self.num_attention_heads if self.layer_num_heads is None else self.layer_num_heads[i]

  def intermediate_in_layer(self, i: int) -> int:
    if self.layer_intermediate_sizes is None:
      return self.intermediate_size
    return self.layer_intermediate_sizes[i]

  @property
  def pooler_width(self) -> int:
    return self.hidden_size if self.pooler_size is None else self.pooler_size

  @property
  def is_structurally_pruned(self) -> bool:
    return any(getattr(self, f) not in (None, ()) for f in _STRUCTURE_FIELDS)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "BertConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    pet = d.get("position_embedding_type", "absolute")
    if pet != "absolute":
      raise FlatjaxInputError(f"position_embedding_type {pet!r} is not supported (only 'absolute')")
    return cls(**{k: v for k, v in d.items() if k in names})

  def to_dict(self) -> dict[str, Any]:
    """The fields as a JSON-ready dict; the structure fields only when set, so a
    standard BERT's ``config.json`` is what Hugging Face writes."""
    d = dataclasses.asdict(self)
    for name in _STRUCTURE_FIELDS:
      if d[name] in (None, ()):
        del d[name]
      elif isinstance(d[name], tuple):
        d[name] = list(d[name])
    return d


_TUPLE_FIELDS = ("layer_num_heads", "layer_intermediate_sizes", "pruned_attention_layers",
                 "pruned_ffn_layers")
_STRUCTURE_FIELDS = ("attention_head_size", *_TUPLE_FIELDS, "pooler_size")

#: The gates of structured pruning and their shapes, for a config ``c``.
GATE_SHAPES = {
    "head": lambda c: (c.num_hidden_layers, c.num_attention_heads),
    "mha": lambda c: (c.num_hidden_layers,),
    "intermediate": lambda c: (c.num_hidden_layers, c.intermediate_size),
    "ffn": lambda c: (c.num_hidden_layers,),
    "hidden": lambda c: (c.hidden_size,),
}


def check_gates(config: BertConfig, gates: dict | None) -> None:
  """Raises FlatjaxInputError for unknown gate names or wrong shapes."""
  if not gates:
    return
  if config.is_structurally_pruned:
    raise FlatjaxInputError("gates apply to an unpruned model; this one is already pruned")
  unknown = sorted(set(gates) - set(GATE_SHAPES))
  if unknown:
    raise FlatjaxInputError(f"unknown gates {unknown}; known: {sorted(GATE_SHAPES)}")
  for name, g in gates.items():
    if tuple(g.shape) != GATE_SHAPES[name](config):
      raise FlatjaxInputError(
          f"gate {name!r} has shape {tuple(g.shape)}, expected {GATE_SHAPES[name](config)}")


def _gelu_erf(x):
  """Exact GELU written as PyTorch's kernel computes it, ``x/2 * (1 + erf(x/sqrt 2))``.

  ``jax.nn.gelu(approximate=False)`` goes through ``erfc``, which XLA:CPU expands
  into an exp plus two rational approximations and a select: ~2.5x the cost of
  ``erf``'s single rational approximation, ~2% of the MiniLM CPU train step.
  """
  return x * 0.5 * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


# Hugging Face's ACT2FN names: "gelu" is the exact erf form, "gelu_new" the tanh form.
ACTIVATIONS = {
    "gelu": _gelu_erf,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


def _dense(config: BertConfig, features: int, dtype, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name,
                  kernel_init=nn.initializers.normal(config.initializer_range))


def _apply_dense(dense: nn.Dense, x: Array) -> Array:
  """``dense`` on [..., in] as one [N, in] x [in, out] matmul.

  Same math as ``dense(x)``; the gain is in the backward pass: the kernel's
  gradient of a 3-D ``x`` is a dot_general contracting two dimensions, which
  XLA:CPU runs with extra transposes and a slower dot. The 2-D form made the
  MiniLM CPU train step (batch 32 x 128) ~11% faster.
  """
  y = dense(x.reshape(math.prod(x.shape[:-1]), x.shape[-1]))  # no -1: x may have 0 features
  return y.reshape(*x.shape[:-1], y.shape[-1])


def _layer_norm(config: BertConfig, name: str) -> nn.LayerNorm:
  # Statistics in float32 whatever the compute dtype: bf16 variance is too coarse.
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=jnp.float32,
                      param_dtype=jnp.float32, name=name)


def _gated_layer_norm(config: BertConfig, x: Array, hidden_gate: Array) -> Array:
  """LayerNorm with statistics over the dimensions whose hidden gate is nonzero
  (CoFi's); the others pass through unchanged (they are 0 in a gated model)."""
  keep = hidden_gate != 0
  y = _layer_norm(config, "LayerNorm")(x, mask=jnp.broadcast_to(keep, x.shape))
  return jnp.where(keep, y, x)


def _pack_bits(mask: Array) -> Array:
  """bool [..., n] (n % 8 == 0) -> uint8 [..., n // 8], bit i of byte j = mask[8j + i]."""
  *lead, n = mask.shape
  bits = mask.reshape(*lead, n // 8, 8).astype(jnp.uint8) << jnp.arange(8, dtype=jnp.uint8)
  return jnp.sum(bits, axis=-1, dtype=jnp.uint8)


def _unpack_bits(packed: Array, n: int) -> Array:
  bits = (packed[..., None] >> jnp.arange(8, dtype=jnp.uint8)) & jnp.uint8(1)
  return bits.reshape(*packed.shape[:-1], n).astype(bool)


class Dropout(nn.Module):
  """``flax.linen.Dropout`` with the same rng stream, mask and output, computed cheaper.

  Inverted dropout: keeps each element with probability ``1 - rate`` (the mask
  is ``jax.random.bernoulli(make_rng("dropout"), 1 - rate, x.shape)``, exactly
  Flax's draw, under the same auto name ``Dropout_N``) and scales kept ones by
  ``1 / (1 - rate)``.

  The difference is speed: the mask is packed 8 per byte by a reduction and
  unpacked where it is used. Unpacked, XLA:CPU fuses the (cheap-looking, all
  integer) PRNG rounds into every consumer of the mask, so the backward pass
  recomputes the whole random stream; the packed mask is a materialised
  array, 1/32 the size of the float32 activations, drawn once. On MiniLM
  (batch 32 x 128) that is ~3% of the CPU train step.
  """
  rate: float

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    if deterministic or self.rate == 0.0:
      return x
    if self.rate == 1.0:  # as Flax: no NaN gradients from 0 * inf
      return jnp.zeros_like(x)
    keep_prob = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), p=keep_prob, shape=x.shape)
    if x.ndim and x.shape[-1] % 8 == 0:
      mask = _unpack_bits(_pack_bits(mask), x.shape[-1])
    return jax.lax.select(mask, x / keep_prob, jnp.zeros_like(x))


class BertEmbeddings(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids, token_type_ids, position_ids, deterministic: bool,
               hidden_gate=None):
    cfg = self.config
    init = nn.initializers.normal(cfg.initializer_range)
    words = nn.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=init,
                     param_dtype=jnp.float32, name="word_embeddings")(input_ids)
    positions = nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, embedding_init=init,
                         param_dtype=jnp.float32, name="position_embeddings")(position_ids)
    types = nn.Embed(cfg.type_vocab_size, cfg.hidden_size, embedding_init=init,
                     param_dtype=jnp.float32, name="token_type_embeddings")(token_type_ids)
    x = words + positions + types
    if hidden_gate is None:
      x = _layer_norm(cfg, "LayerNorm")(x)
    else:
      x = _gated_layer_norm(cfg, x * hidden_gate, hidden_gate)
    x = Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)
    if hidden_gate is not None:
      x = x * hidden_gate
    return x.astype(self.dtype)


class BertSelfAttention(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32
  heads: int | None = None  # this layer's (a pruned model's layers differ)

  @nn.compact
  def __call__(self, x, bias, head_gate, deterministic: bool):
    cfg = self.config
    batch, length, _ = x.shape
    heads = cfg.num_attention_heads if self.heads is None else self.heads
    dim = cfg.head_dim

    def project(name):
      y = _apply_dense(_dense(cfg, heads * dim, self.dtype, name), x)
      return y.reshape(batch, length, heads, dim)

    q, k, v = project("query"), project("key"), project("value")
    # Scale q before the product (as PyTorch's SDPA does): one [B,L,H,D] multiply
    # instead of one over the [B,H,L,L] scores.
    q = q * jnp.asarray(1.0 / math.sqrt(dim), q.dtype)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) + bias
    probs = jax.nn.softmax(scores, axis=-1)
    probs = Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic=deterministic)
    if head_gate is not None:
      probs = probs * head_gate[None, :, None, None]
    context = attention.context(probs.astype(self.dtype), v)
    return context.reshape(batch, length, heads * dim)


class BertSelfOutput(nn.Module):
  """Dense + dropout + residual LayerNorm; also serves as the FFN's ``output``."""
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, residual, deterministic: bool, block_gate=None, hidden_gate=None):
    cfg = self.config
    y = _apply_dense(_dense(cfg, cfg.hidden_size, self.dtype, "dense"), x)
    if block_gate is None and hidden_gate is None:
      y = Dropout(cfg.hidden_dropout_prob)(y, deterministic=deterministic)
      return _layer_norm(cfg, "LayerNorm")(y + residual).astype(self.dtype)
    if block_gate is not None:
      y = y * block_gate
    if hidden_gate is not None:
      y = y * hidden_gate
    y = Dropout(cfg.hidden_dropout_prob)(y, deterministic=deterministic)
    if hidden_gate is None:
      out = _layer_norm(cfg, "LayerNorm")(y + residual)
    else:
      out = _gated_layer_norm(cfg, y + residual, hidden_gate)
    if block_gate is not None:  # a block gated to exactly 0 is skipped (CoFi)
      out = jnp.where(block_gate == 0, residual, out)
    return out.astype(self.dtype)


class BertAttention(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32
  heads: int | None = None

  @nn.compact
  def __call__(self, x, bias, gates: dict, deterministic: bool):
    context = BertSelfAttention(self.config, self.dtype, self.heads, name="self")(
        x, bias, gates.get("head"), deterministic)
    return BertSelfOutput(self.config, self.dtype, name="output")(
        context, x, deterministic, gates.get("mha"), gates.get("hidden"))


class BertIntermediate(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32
  features: int | None = None  # this layer's (a pruned model's layers differ)

  @nn.compact
  def __call__(self, x, neuron_gate=None):
    cfg = self.config
    features = cfg.intermediate_size if self.features is None else self.features
    y = ACTIVATIONS[cfg.hidden_act](_apply_dense(_dense(cfg, features, self.dtype, "dense"), x))
    return y if neuron_gate is None else y * neuron_gate


class BertLayer(nn.Module):
  """Attention then FFN. ``gates``: this layer's slice of the model's gates
  (``head`` [H], ``mha`` [], ``intermediate`` [F], ``ffn`` [], ``hidden`` [d])."""
  config: BertConfig
  dtype: Any = jnp.float32
  index: int = 0

  @nn.compact
  def __call__(self, x, bias, gates: dict, deterministic: bool):
    cfg, i = self.config, self.index
    a = x
    if i not in cfg.pruned_attention_layers:
      a = BertAttention(cfg, self.dtype, cfg.heads_in_layer(i), name="attention")(
          x, bias, gates, deterministic)
    if i in cfg.pruned_ffn_layers:
      return a
    h = BertIntermediate(cfg, self.dtype, cfg.intermediate_in_layer(i), name="intermediate")(
        a, gates.get("intermediate"))
    return BertSelfOutput(cfg, self.dtype, name="output")(
        h, a, deterministic, gates.get("ffn"), gates.get("hidden"))


class BertEncoder(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, bias, gates: dict, deterministic: bool, output_hidden_states: bool):
    hidden_states = [x]
    # Layers are named "0", "1", ... under "layer" so paths read encoder/layer/3/...
    layers = BertLayerStack(self.config, self.dtype, name="layer")
    for i in range(self.config.num_hidden_layers):
      layer_gates = {k: (g if k == "hidden" else g[i]) for k, g in gates.items()}
      x = layers(i, x, bias, layer_gates, deterministic)
      hidden_states.append(x)
    return x, tuple(hidden_states) if output_hidden_states else None


class BertLayerStack(nn.Module):
  """Holds the layers as children "0".."N-1" of one scope named ``layer``."""
  config: BertConfig
  dtype: Any = jnp.float32

  def setup(self):
    self.layers = [BertLayer(self.config, self.dtype, index=i, name=str(i))
                   for i in range(self.config.num_hidden_layers)]

  def __call__(self, i, x, bias, gates, deterministic):
    return self.layers[i](x, bias, gates, deterministic)


class BertPooler(nn.Module):
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    return jnp.tanh(_dense(self.config, self.config.pooler_width, self.dtype, "dense")(x[:, 0]))


def attention_bias(attention_mask: Array) -> Array:
  """[B, L] 1/0 mask -> additive [B, 1, 1, L] bias (0 kept, float32 min masked).

  float32's most negative finite value, as Hugging Face uses: a fully masked row
  still gives a finite softmax instead of NaN.
  """
  keep = attention_mask[:, None, None, :].astype(bool)
  return jnp.where(keep, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)


def _merge_gates(head_gates, gates) -> dict:
  gates = dict(gates or {})
  if head_gates is not None:
    if "head" in gates:
      raise FlatjaxInputError("give head gates either as head_gates or as gates['head'], not both")
    gates["head"] = head_gates
  return gates


class BertModel(nn.Module):
  """Embeddings, encoder and (optionally) pooler: Hugging Face's ``BertModel``.

  Returns a dict with ``last_hidden_state`` [B, L, H], ``pooler_output`` [B, H]
  (absent without a pooler) and, if asked, ``hidden_states`` (embeddings
  output then each layer's, ``num_layers + 1`` arrays).
  """
  config: BertConfig
  dtype: Any = jnp.float32
  add_pooling_layer: bool = True

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
               head_gates=None, *, deterministic: bool = True,
               output_hidden_states: bool = False, gates: dict | None = None):
    gates = _merge_gates(head_gates, gates)
    check_gates(self.config, gates)
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    if input_ids.shape[-1] > self.config.max_position_embeddings:
      # An out-of-range position lookup would silently give NaNs.
      raise FlatjaxInputError(
          f"sequence length {input_ids.shape[-1]} exceeds max_position_embeddings "
          f"{self.config.max_position_embeddings}")
    if position_ids is None:
      position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
    x = BertEmbeddings(self.config, self.dtype, name="embeddings")(
        input_ids, token_type_ids, position_ids, deterministic, gates.get("hidden"))
    x, hidden_states = BertEncoder(self.config, self.dtype, name="encoder")(
        x, attention_bias(attention_mask), gates, deterministic, output_hidden_states)
    out = {"last_hidden_state": x}
    if self.add_pooling_layer:
      out["pooler_output"] = BertPooler(self.config, self.dtype, name="pooler")(x)
    if output_hidden_states:
      out["hidden_states"] = hidden_states
    return out


class BertForSequenceClassification(nn.Module):
  """Pooled [CLS] -> dropout -> dense; ``num_labels == 1`` is regression (STS-B).

  Adds ``logits`` [B, num_labels] (float32) to :class:`BertModel`'s outputs.
  """
  config: BertConfig
  num_labels: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
               head_gates=None, *, deterministic: bool = True,
               output_hidden_states: bool = False, gates: dict | None = None):
    cfg = self.config
    out = BertModel(cfg, self.dtype, name="bert")(
        input_ids, attention_mask, token_type_ids, position_ids, head_gates,
        deterministic=deterministic, output_hidden_states=output_hidden_states, gates=gates)
    rate = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
    x = Dropout(rate)(out["pooler_output"], deterministic=deterministic)
    out["logits"] = _dense(cfg, self.num_labels, self.dtype, "classifier")(x).astype(jnp.float32)
    return out


class BertForQuestionAnswering(nn.Module):
  """Per-token dense to (start, end) logits, as Hugging Face's QA head (no pooler)."""
  config: BertConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
               head_gates=None, *, deterministic: bool = True,
               output_hidden_states: bool = False, gates: dict | None = None):
    out = BertModel(self.config, self.dtype, add_pooling_layer=False, name="bert")(
        input_ids, attention_mask, token_type_ids, position_ids, head_gates,
        deterministic=deterministic, output_hidden_states=output_hidden_states, gates=gates)
    logits = _apply_dense(_dense(self.config, 2, self.dtype, "qa_outputs"),
                          out["last_hidden_state"])
    logits = logits.astype(jnp.float32)
    out["start_logits"], out["end_logits"] = logits[..., 0], logits[..., 1]
    return out
