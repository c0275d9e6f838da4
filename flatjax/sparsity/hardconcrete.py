"""Hard-concrete (L0) gates and CoFi's Lagrangian sparsity constraint.

CoFi structured pruning (Xia et al. 2022) multiplies parts of a BERT by
learned gates ``z`` in ``[0, 1]``: one per attention head and one per whole
attention block of each layer, one per intermediate (FFN) dimension and one
per whole FFN block of each layer, and one per hidden dimension shared by all
layers. A gate group is a dict entry keyed by a name of :data:`GATE_NAMES`:

    "head"          [L, H]   attention head h of layer l
    "mha"           [L]      layer l's whole multi-head attention
    "intermediate"  [L, F]   intermediate dimension f of layer l
    "ffn"           [L]      layer l's whole feed-forward block
    "hidden"        [d]      hidden dimension i, in every layer

Any subset may be present; a missing group keeps everything.

Each gate is a *hard-concrete* variable (Louizos et al. 2018) with a learned
location ``log_alpha``, temperature ``beta``, stretch limits ``gamma < 0`` and
``zeta > 1``:

    u ~ U(eps, 1 - eps)
    s = sigmoid((log u - log(1 - u) + log_alpha) / beta)
    z = clip(s (zeta - gamma) + gamma, 0, 1)

The stretch puts real probability mass on exactly 0 and exactly 1, and ``z``
is differentiable in ``log_alpha`` (reparameterisation). The CDF of the
stretched, unclipped variable is

    Q(x) = sigmoid(beta logit((x - gamma) / (zeta - gamma)) - log_alpha),

clipped to ``[eps, 1 - eps]`` as in CoFi, so ``P(z = 0) = Q(0)``,
``P(z = 1) = 1 - Q(1)`` and a gate is nonzero with probability

    1 - Q(0) = sigmoid(log_alpha - beta log(-gamma / zeta)),

CoFi's per-gate "score" (:func:`prob_nonzero`). From the scores CoFi counts
the expected number of remaining weights (:func:`expected_params`) and hence
the expected sparsity ``s`` (:func:`expected_sparsity`), and constrains it to
a target ``t`` with a Lagrangian term added to the loss (:func:`lagrangian`):

    lambda1 (s - t) + lambda2 (s - t)^2,

minimised over the gates (and the model) and *maximised* over the
multipliers ``lambda1, lambda2`` (gradient ascent), so that at the saddle
point ``s = t``. ``t`` is warmed up linearly (:func:`target_sparsity_at`).
At test time the gates are deterministic (:func:`deterministic_gates`).

    dims = ModelDims.from_config(bert_config)
    log_alpha = init_log_alpha(key, gate_shapes(dims.num_layers, dims.num_heads,
                                                dims.intermediate_size, dims.hidden_size))
    lambdas = {"lambda1": jnp.zeros(()), "lambda2": jnp.zeros(())}

    def loss_fn(model_params, log_alpha, lambdas, batch, key, step):
      z = sample_gates(key, log_alpha)                  # multiply into the forward pass
      task = ...
      s = expected_sparsity(log_alpha, dims)
      t = target_sparsity_at(step, 0.95, warmup_steps=1000)
      return task + lagrangian(s, t, lambdas["lambda1"], lambdas["lambda2"])

    # descend on model params and log_alpha; ascend on lambdas, e.g. with
    # optax.adam(-lr) (CoFi: AdamW with a negated learning rate).

All functions are pure and jittable in their array arguments; configs and
:class:`ModelDims` are static (close over them).

References:
  Louizos, Welling & Kingma, *Learning Sparse Neural Networks through L0
  Regularization*, ICLR 2018. Xia, Zhong & Chen, *Structured Pruning Learns
  Compact and Accurate Models*, ACL 2022 (CoFi), and its reference
  implementation ``princeton-nlp/CoFiPruning``, ``models/l0_module.py``.
  Wang, Wohlwend & Lei, *Structured Pruning of Large Language Models*, EMNLP
  2020 (the deterministic gates' 0.8 scale).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from flatjax.errors import FlatjaxInputError
from flatjax.errors import whole_number as _whole

GATE_NAMES: tuple[str, ...] = ("head", "mha", "intermediate", "ffn", "hidden")
# Gates per group: one row per layer for head and intermediate, one per layer
# for the whole-block gates mha and ffn, one vector for hidden.
_GATE_NDIM = {"head": 2, "mha": 1, "intermediate": 2, "ffn": 1, "hidden": 1}
# Groups whose entries are single (scalar) gates in the deterministic rule.
_SCALAR_GATES = ("mha", "ffn")


def _number(name: str, value: Any) -> float:
  try:
    out = float(value)
  except (TypeError, ValueError):
    raise FlatjaxInputError(f"{name} must be a number, got {value!r}") from None
  if math.isnan(out):
    raise FlatjaxInputError(f"{name} must be a number, got {value!r}")
  return out


@dataclasses.dataclass(frozen=True)
class HardConcreteConfig:
  """The hard-concrete distribution's constants (Louizos et al. 2018; CoFi's values).

  Attributes:
    temperature: ``beta`` > 0; 2/3.
    limit_low: the stretch's lower end ``gamma`` < 0; -0.1.
    limit_high: the stretch's upper end ``zeta`` > 1; 1.1.
    droprate_init: in (0, 1): :func:`init_log_alpha` centres ``log_alpha`` at
      ``log(1 - p) - log(p)``; 0.5 (``log_alpha = 0``).
    eps: in (0, 0.5): uniform noise is drawn from ``U(eps, 1 - eps)`` and the
      CDF is clipped to ``[eps, 1 - eps]``; 1e-6.
  """
  temperature: float = 2.0 / 3.0
  limit_low: float = -0.1
  limit_high: float = 1.1
  droprate_init: float = 0.5
  eps: float = 1e-6

  def __post_init__(self):
    temperature = _number("temperature", self.temperature)
    low = _number("limit_low", self.limit_low)
    high = _number("limit_high", self.limit_high)
    droprate = _number("droprate_init", self.droprate_init)
    eps = _number("eps", self.eps)
    if not 0.0 < temperature < math.inf:
      raise FlatjaxInputError(f"temperature must be > 0, got {self.temperature!r}")
    if not -math.inf < low < 0.0:
      raise FlatjaxInputError(f"limit_low must be < 0 (and finite), got {self.limit_low!r}")
    if not 1.0 < high < math.inf:
      raise FlatjaxInputError(f"limit_high must be > 1 (and finite), got {self.limit_high!r}")
    if not 0.0 < droprate < 1.0:
      raise FlatjaxInputError(f"droprate_init must be in (0, 1), got {self.droprate_init!r}")
    if not 0.0 < eps < 0.5:
      raise FlatjaxInputError(f"eps must be in (0, 0.5), got {self.eps!r}")


_DEFAULT = HardConcreteConfig()

# ModelDims field -> attribute names read by ModelDims.from_config, in order.
_DIM_ALIASES = {
    "num_layers": ("num_layers", "num_hidden_layers"),
    "hidden_size": ("hidden_size",),
    "num_heads": ("num_heads", "num_attention_heads"),
    "head_size": ("head_size", "head_dim"),
    "intermediate_size": ("intermediate_size",),
}


class ModelDims(NamedTuple):
  """The sizes of a BERT-like encoder that CoFi's parameter count needs.

  Attributes:
    num_layers: ``L``, encoder layers.
    hidden_size: ``d``.
    num_heads: ``H``, attention heads per layer.
    head_size: per head; usually ``d / H``.
    intermediate_size: ``F``, the FFN's inner width.
  """
  num_layers: int
  hidden_size: int
  num_heads: int
  head_size: int
  intermediate_size: int

  @classmethod
  def from_config(cls, config: Any) -> ModelDims:
    """Reads the dims from any object's attributes: ``num_layers`` (or
    ``num_hidden_layers``), ``hidden_size``, ``num_heads`` (or
    ``num_attention_heads``), ``head_size`` (or ``head_dim``; else
    ``hidden_size // num_heads`` when that divides) and
    ``intermediate_size``. Works with flatjax's and Hugging Face's
    ``BertConfig``."""
    values: dict[str, Any] = {}
    for field, names in _DIM_ALIASES.items():
      for name in names:
        value = getattr(config, name, None)
        if value is not None:
          values[field] = value
          break
    if ("head_size" not in values and "hidden_size" in values and "num_heads" in values):
      d, h = values["hidden_size"], values["num_heads"]
      if isinstance(d, int) and isinstance(h, int) and h > 0 and d % h == 0:
        values["head_size"] = d // h
    missing = [f"{field} ({' or '.join(_DIM_ALIASES[field])})"
               for field in cls._fields if field not in values]
    if missing:
      raise FlatjaxInputError(f"{type(config).__name__} has no {', '.join(missing)}")
    return _check_dims(cls(**values))

  def gate_shapes(self, kinds: Iterable[str] = GATE_NAMES) -> dict[str, tuple[int, ...]]:
    """:func:`gate_shapes` for these dims."""
    return gate_shapes(self.num_layers, self.num_heads, self.intermediate_size,
                       self.hidden_size, kinds)


def _check_dims(dims: Any) -> ModelDims:
  if not isinstance(dims, ModelDims):
    raise FlatjaxInputError(f"expected a ModelDims, got {type(dims).__name__} (build one with "
                            f"ModelDims.from_config)")
  return ModelDims(*(_whole(f, v, 1) for f, v in zip(ModelDims._fields, dims)))


def _check_names(names: Iterable[str], what: str) -> None:
  unknown = [n for n in names if n not in GATE_NAMES]
  if unknown:
    raise FlatjaxInputError(f"unknown gate name(s) {unknown} in {what}; expected some of "
                            f"{GATE_NAMES}")


def _check_gates(gates: Any, what: str) -> None:
  """``gates`` must map known gate names to arrays of the group's rank."""
  if not isinstance(gates, Mapping):
    raise FlatjaxInputError(f"{what} must be a dict keyed by gate names {GATE_NAMES}, got "
                            f"{type(gates).__name__}")
  _check_names(gates, what)
  for name, value in gates.items():
    shape = jnp.shape(value)
    if len(shape) != _GATE_NDIM[name]:
      raise FlatjaxInputError(f"{what}[{name!r}] must have {_GATE_NDIM[name]} dimension(s) "
                              f"({'[L, n]' if _GATE_NDIM[name] == 2 else '[n]'}), got shape "
                              f"{shape}")


def gate_shapes(num_layers: int, num_heads: int, intermediate_size: int, hidden_size: int,
                kinds: Iterable[str] = GATE_NAMES) -> dict[str, tuple[int, ...]]:
  """The shapes of the gate groups ``kinds`` (names from :data:`GATE_NAMES`):

      head [L, H], mha [L], intermediate [L, F], ffn [L], hidden [d].
  """
  kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
  _check_names(kinds, "kinds")
  if len(set(kinds)) != len(kinds):
    raise FlatjaxInputError(f"kinds {kinds} name a gate group more than once")
  L = _whole("num_layers", num_layers, 1)
  H = _whole("num_heads", num_heads, 1)
  F = _whole("intermediate_size", intermediate_size, 1)
  d = _whole("hidden_size", hidden_size, 1)
  shapes = {"head": (L, H), "mha": (L,), "intermediate": (L, F), "ffn": (L,), "hidden": (d,)}
  return {k: shapes[k] for k in kinds}


def init_log_alpha(key: jax.Array, shapes: Mapping[str, Iterable[int]],
                   config: HardConcreteConfig = _DEFAULT,
                   means: Mapping[str, float] | None = None) -> dict[str, jax.Array]:
  """Initial locations: ``log_alpha ~ Normal(log(1 - p) - log(p), 0.01^2)`` with
  ``p = config.droprate_init``, float32, for every group in ``shapes``.

  ``means`` overrides the mean of some groups. (CoFi's code starts the head,
  mha, ffn and hidden gates at mean 10, i.e. all but surely kept, and only the
  intermediate gates at the droprate's mean.) Group ``name`` draws from
  ``fold_in(key, GATE_NAMES.index(name))``, so its values do not depend on
  which other groups are present.
  """
  if not isinstance(shapes, Mapping):
    raise FlatjaxInputError(f"shapes must be a dict keyed by gate names, got "
                            f"{type(shapes).__name__}")
  _check_names(shapes, "shapes")
  means = dict(means or {})
  _check_names(means, "means")
  default = math.log(1.0 - config.droprate_init) - math.log(config.droprate_init)
  out = {}
  for name, shape in shapes.items():
    shape = tuple(_whole(f"shapes[{name!r}] entries", n, 1) for n in shape)
    if len(shape) != _GATE_NDIM[name]:
      raise FlatjaxInputError(f"shapes[{name!r}] must have {_GATE_NDIM[name]} dimension(s), "
                              f"got {shape}")
    mean = _number(f"means[{name!r}]", means.get(name, default))
    noise = jax.random.normal(jax.random.fold_in(key, GATE_NAMES.index(name)), shape,
                              jnp.float32)
    out[name] = jnp.float32(mean) + jnp.float32(0.01) * noise
  return out


def cdf(x: Any, log_alpha: jax.Array, config: HardConcreteConfig = _DEFAULT) -> jax.Array:
  """``Q(x) = P(s (zeta - gamma) + gamma <= x)``, the CDF of the stretched
  (unclipped) hard-concrete variable at ``gamma < x < zeta``:

      Q(x) = sigmoid(beta logit((x - gamma) / (zeta - gamma)) - log_alpha),

  clipped to ``[eps, 1 - eps]`` (as CoFi's ``cdf_qz``; the gradient is zero
  where clipped). ``P(z = 0) = Q(0)``, ``P(z = 1) = 1 - Q(1)``. float32,
  broadcasting ``x`` against ``log_alpha``.
  """
  c = config
  if isinstance(x, (int, float)) and not c.limit_low < x < c.limit_high:
    raise FlatjaxInputError(f"the CDF is defined for {c.limit_low} < x < {c.limit_high}, "
                            f"got {x!r}")
  x = jnp.asarray(x, jnp.float32)
  log_alpha = jnp.asarray(log_alpha, jnp.float32)
  xn = (x - c.limit_low) / (c.limit_high - c.limit_low)
  logits = jnp.log(xn) - jnp.log1p(-xn)
  return jnp.clip(jax.nn.sigmoid(logits * c.temperature - log_alpha), c.eps, 1.0 - c.eps)


def prob_nonzero(log_alpha: jax.Array | Mapping[str, jax.Array],
                 config: HardConcreteConfig = _DEFAULT) -> Any:
  """``P(z != 0) = 1 - Q(0) = sigmoid(log_alpha - beta log(-gamma / zeta))``
  (clipped to ``[eps, 1 - eps]``): CoFi's per-gate score. ``log_alpha`` is
  one array or a dict of gate groups (then a dict like it)."""
  if isinstance(log_alpha, Mapping):
    _check_gates(log_alpha, "log_alpha")
    return {name: 1.0 - cdf(0.0, la, config) for name, la in log_alpha.items()}
  return 1.0 - cdf(0.0, log_alpha, config)


def _sample(u: jax.Array, log_alpha: jax.Array, c: HardConcreteConfig) -> jax.Array:
  """The hard-concrete sample for uniform noise ``u`` (the quantile function,
  stretched and clipped)."""
  s = jax.nn.sigmoid((jnp.log(u) - jnp.log1p(-u) + log_alpha) / c.temperature)
  return jnp.clip(s * (c.limit_high - c.limit_low) + c.limit_low, 0.0, 1.0)


def sample_gates(key: jax.Array, log_alpha: Mapping[str, jax.Array],
                 config: HardConcreteConfig = _DEFAULT) -> dict[str, jax.Array]:
  """Draws every gate independently (training-time gates):

      u ~ U(eps, 1 - eps),  s = sigmoid((log u - log(1 - u) + log_alpha) / beta),
      z = clip(s (zeta - gamma) + gamma, 0, 1),

  float32, differentiable in ``log_alpha``. Group ``name`` draws its noise
  from ``fold_in(key, GATE_NAMES.index(name))``: deterministic given ``key``,
  and a group's gates do not depend on which other groups are present.
  """
  _check_gates(log_alpha, "log_alpha")
  out = {}
  for name, la in log_alpha.items():
    la = jnp.asarray(la, jnp.float32)
    u = jax.random.uniform(jax.random.fold_in(key, GATE_NAMES.index(name)), la.shape,
                           jnp.float32, config.eps, 1.0 - config.eps)
    out[name] = _sample(u, la, config)
  return out


def _deterministic_last_axis(log_alpha: jax.Array, c: HardConcreteConfig,
                             soft_scale: float) -> jax.Array:
  """CoFi's test-time gates with one group per slice along the last axis."""
  n = log_alpha.shape[-1]
  expected_zeros = n - jnp.sum(1.0 - cdf(0.0, log_alpha, c), axis=-1, keepdims=True)
  num_zeros = jnp.round(expected_zeros)  # halves to even, as Python's round in CoFi
  # rank[i]: i's position in ascending log_alpha order (equal values: earlier first).
  order = jnp.argsort(log_alpha, axis=-1, stable=True)
  rank = jnp.argsort(order, axis=-1, stable=True)
  soft = jax.nn.sigmoid(log_alpha / c.temperature * soft_scale)
  return jnp.where(rank < num_zeros, jnp.zeros_like(soft), soft)


def deterministic_gates(log_alpha: Mapping[str, jax.Array],
                        config: HardConcreteConfig = _DEFAULT, *,
                        soft_scale: float = 0.8) -> dict[str, jax.Array]:
  """CoFi's test-time gates (after Wang et al. 2020's ``flop``), per group.

  For a group of ``n`` gates, the expected number of zeros is ``n - sum(1 -
  Q(0))``; its rounding (halves to even), ``k``, is how many gates are set to
  exactly 0: those with the ``k`` smallest ``log_alpha`` (equal values: the
  earlier first). The others keep their *soft* value ``sigmoid(log_alpha /
  beta * soft_scale)``, not 1. A single gate is therefore 0 when
  ``round(Q(0)) == 1`` and its soft value otherwise.

  The groups, as in CoFi: each layer's row of ``head`` [L, H] and of
  ``intermediate`` [L, F]; each single gate of ``mha`` [L] and ``ffn`` [L];
  all of ``hidden`` [d] together. ``k`` is computed from the values (a rank,
  not a Python int), so this runs under ``jit``. Returns float32 arrays.
  """
  _check_gates(log_alpha, "log_alpha")
  soft_scale = _number("soft_scale", soft_scale)
  out = {}
  for name, la in log_alpha.items():
    la = jnp.asarray(la, jnp.float32)
    if name in _SCALAR_GATES:
      out[name] = _deterministic_last_axis(la[:, None], config, soft_scale)[:, 0]
    else:
      out[name] = _deterministic_last_axis(la, config, soft_scale)
  return out


def prunable_params(dims: ModelDims) -> int:
  """The weights CoFi can prune, ``L (4 d H head_size + 2 d F)``: every layer's
  Q, K, V and attention-output kernels and its two FFN kernels (no biases,
  LayerNorm or embeddings)."""
  L, d, H, hs, F = _check_dims(dims)
  return L * (4 * d * H * hs + 2 * d * F)


def expected_params(scores: Mapping[str, jax.Array], dims: ModelDims) -> jax.Array:
  """The expected number of remaining prunable weights given each gate's
  probability of being nonzero (CoFi's ``get_num_parameters_and_constraint``
  with hidden gates):

      head  = score_head * score_mha[:, None]              [L, H]
      inter = score_intermediate * score_ffn[:, None]      [L, F]
      E[#]  = sum(outer(score_hidden, head)) * 4 head_size
            + sum(outer(score_hidden, inter)) * 2

  (A kept head keeps ``head_size`` columns of Q, K, V and rows of the output
  kernel, each as long as the kept hidden dimensions; a kept intermediate
  dimension one column and one row of the FFN kernels.) With 0/1 scores this
  is the exact count of kept weights. A missing group counts as all kept
  (score 1). Returns a float32 scalar.
  """
  dims = _check_dims(dims)
  _check_gates(scores, "scores")
  shapes = dims.gate_shapes()
  for name, value in scores.items():
    if tuple(jnp.shape(value)) != shapes[name]:
      raise FlatjaxInputError(f"scores[{name!r}] has shape {tuple(jnp.shape(value))} but "
                              f"{dims} needs {shapes[name]}")

  def get(name):
    if name in scores:
      return jnp.asarray(scores[name], jnp.float32)
    return jnp.ones(shapes[name], jnp.float32)
  head = get("head") * get("mha")[:, None]
  inter = get("intermediate") * get("ffn")[:, None]
  # sum(outer(a, b)) = sum(a) sum(b).
  hidden = jnp.sum(get("hidden"))
  return hidden * (jnp.sum(head) * jnp.float32(4 * dims.head_size) + jnp.sum(inter) * 2.0)


def expected_sparsity(log_alpha: Mapping[str, jax.Array], dims: ModelDims,
                      config: HardConcreteConfig = _DEFAULT) -> jax.Array:
  """``1 - expected_params(prob_nonzero(log_alpha), dims) / prunable_params(dims)``:
  the expected fraction of the prunable weights that the gates remove
  (CoFi's ``expected_sparsity``). Differentiable in ``log_alpha``."""
  dims = _check_dims(dims)
  remaining = expected_params(prob_nonzero(log_alpha, config), dims)
  return 1.0 - remaining / jnp.float32(prunable_params(dims))


def _target(name: str, value: Any) -> Any:
  """A sparsity target in [0, 1); traced values pass unchecked."""
  if isinstance(value, jax.core.Tracer):
    return value
  out = _number(name, value)
  if not 0.0 <= out < 1.0:
    raise FlatjaxInputError(f"{name} must be in [0, 1), got {value!r}")
  return out


def target_sparsity_at(step: Any, final_target: float, warmup_steps: int,
                       start: float = 0.0) -> jax.Array:
  """The Lagrangian's target at ``step``, warmed up linearly (CoFi):

      t(step) = start + (final_target - start) min(1, step / warmup_steps),

  and ``final_target`` throughout when ``warmup_steps == 0``. Targets are in
  [0, 1); ``step`` may be traced. Returns float32 (negative steps: ``start``).
  """
  final_target = _target("final target sparsity", final_target)
  start = _target("start sparsity", start)
  warmup_steps = _whole("warmup_steps", warmup_steps, 0)
  step = jnp.asarray(step, jnp.float32)
  if warmup_steps == 0:
    return jnp.broadcast_to(jnp.asarray(final_target, jnp.float32), step.shape)
  progress = jnp.clip(step / warmup_steps, 0.0, 1.0)
  return jnp.asarray(start + (final_target - start) * progress, jnp.float32)


def lagrangian(expected_sparsity: jax.Array, target: jax.Array, lambda1: jax.Array,
               lambda2: jax.Array) -> jax.Array:
  """CoFi's sparsity constraint as a loss term (Xia et al. 2022, Eq. 6):

      lambda1 (s - t) + lambda2 (s - t)^2,    s: expected sparsity, t: target.

  Add it to the loss; minimise over the gates' ``log_alpha`` (and the model)
  and *maximise* over ``lambda1, lambda2`` (start them at 0; e.g.
  ``optax.adam(-learning_rate)`` or negated gradients), so that the
  multipliers grow until ``s`` reaches ``t``.
  """
  gap = jnp.asarray(expected_sparsity) - jnp.asarray(target)
  return lambda1 * gap + lambda2 * gap * gap
