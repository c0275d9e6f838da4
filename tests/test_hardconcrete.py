"""Hard-concrete gates and CoFi's sparsity constraint (flatjax.sparsity.hardconcrete),
against closed forms, numerical integrals and exact weight counts written here in numpy."""

from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flatjax.errors import FlatjaxInputError
from flatjax.sparsity import hardconcrete as hc

BETA, GAMMA, ZETA, EPS = 2.0 / 3.0, -0.1, 1.1, 1e-6
# P(z != 0) = sigmoid(log_alpha + SHIFT)
SHIFT = -BETA * math.log(-GAMMA / ZETA)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _log_sigmoid(x):
  x = np.asarray(x, np.float64)
  return -np.logaddexp(0.0, -x)


def _p_zero(la):
  """P(z = 0): the stretched variable falls below 0 iff s < -gamma / (zeta - gamma)."""
  return _sigmoid(BETA * math.log(-GAMMA / ZETA) - np.asarray(la, np.float64))


def _p_one(la):
  """P(z = 1): s > (1 - gamma) / (zeta - gamma), whose logit is log((1 - gamma) / (zeta - 1))."""
  return _sigmoid(np.asarray(la, np.float64) - BETA * math.log((1 - GAMMA) / (ZETA - 1)))


def _concrete_log_density(y, la):
  """log density of y = logit(s) for the binary concrete s (Maddison et al. 2017):
  p(s) = beta a s^(-beta-1) (1-s)^(-beta-1) / (a s^-beta + (1-s)^-beta)^2, a = e^la,
  times ds/dy = s (1 - s)."""
  log_s, log_1ms = _log_sigmoid(y), _log_sigmoid(-y)
  return (math.log(BETA) + la - BETA * (log_s + log_1ms)
          - 2.0 * np.logaddexp(la - BETA * log_s, -BETA * log_1ms))


def _mean_by_integral(la):
  """E[z] = int clip(s (zeta - gamma) + gamma, 0, 1) p(s) ds, on a fine grid in logit space."""
  y = np.linspace(-60.0, 60.0, 400_001)
  density = np.exp(_concrete_log_density(y, la))
  z = np.clip(_sigmoid(y) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)
  total = np.trapezoid(density, y)
  assert abs(total - 1.0) < 1e-6  # the reference density itself is normalised
  return np.trapezoid(z * density, y)


# ---------------------------------------------------------------- sampling


def test_samples_match_the_hard_concrete_distribution():
  values = np.array([-2.0, 0.0, 1.5, 3.0], np.float32)
  n = 200_000
  log_alpha = {"head": jnp.broadcast_to(jnp.asarray(values)[:, None], (len(values), n))}
  z = np.asarray(hc.sample_gates(jax.random.key(7), log_alpha)["head"], np.float64)
  assert z.shape == (len(values), n) and z.min() >= 0.0 and z.max() <= 1.0
  for la, row in zip(values, z):
    p0, p1 = _p_zero(la), _p_one(la)
    assert abs(np.mean(row == 0.0) - p0) < 5 * math.sqrt(p0 * (1 - p0) / n)
    assert abs(np.mean(row == 1.0) - p1) < 5 * math.sqrt(p1 * (1 - p1) / n)
    assert abs(row.mean() - _mean_by_integral(la)) < 5 * row.std() / math.sqrt(n)
    # A second route to the mean: E[z] = int_0^1 P(z > x) dx with Louizos et al.'s CDF.
    x = np.linspace(0.0, 1.0, 100_001)
    xn = (x - GAMMA) / (ZETA - GAMMA)
    survival = 1.0 - _sigmoid(BETA * (np.log(xn) - np.log1p(-xn)) - la)
    assert abs(np.trapezoid(survival, x) - _mean_by_integral(la)) < 1e-6


def test_sampling_is_deterministic_per_key_and_independent_per_group():
  shapes = hc.gate_shapes(2, 4, 16, 8)
  log_alpha = hc.init_log_alpha(jax.random.key(0), shapes)
  a = hc.sample_gates(jax.random.key(1), log_alpha)
  b = hc.sample_gates(jax.random.key(1), log_alpha)
  c = hc.sample_gates(jax.random.key(2), log_alpha)
  only_ffn = hc.sample_gates(jax.random.key(1), {"ffn": log_alpha["ffn"]})
  assert set(a) == set(hc.GATE_NAMES)
  for name in a:
    assert a[name].shape == shapes[name] and a[name].dtype == jnp.float32
    np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a[name], c[name])
  # A group's gates do not depend on which other groups are present.
  np.testing.assert_array_equal(only_ffn["ffn"], a["ffn"])
  # Elements of one group use different noise (at log_alpha ~ 0 most are inside (0, 1)).
  inner = np.asarray(a["intermediate"])
  assert len(np.unique(inner)) > inner.size // 2


def test_samples_are_differentiable_in_log_alpha():
  la = jnp.linspace(-1.0, 1.0, 64)
  key = jax.random.key(3)
  z = hc.sample_gates(key, {"hidden": la})["hidden"]
  g = jax.grad(lambda a: jnp.sum(hc.sample_gates(key, {"hidden": a})["hidden"]))(la)
  inside = (z > 0) & (z < 1)
  assert jnp.any(inside)
  assert jnp.all(g[inside] > 0) and jnp.all(g[~inside] == 0)


def test_init_log_alpha_statistics_and_means():
  shapes = {"intermediate": (4, 5000), "mha": (4,)}
  p = 0.3
  la = hc.init_log_alpha(jax.random.key(0), shapes, hc.HardConcreteConfig(droprate_init=p),
                         means={"mha": 10.0})
  x = np.asarray(la["intermediate"], np.float64)
  assert la["intermediate"].shape == (4, 5000) and la["intermediate"].dtype == jnp.float32
  assert abs(x.mean() - (math.log(1 - p) - math.log(p))) < 5 * 0.01 / math.sqrt(x.size)
  assert abs(x.std() - 0.01) < 0.0005
  assert np.all(np.abs(np.asarray(la["mha"]) - 10.0) < 0.05)
  default = hc.init_log_alpha(jax.random.key(0), {"hidden": (1000,)})["hidden"]
  assert abs(float(jnp.mean(default))) < 0.002  # droprate 0.5: log_alpha centred at 0
  again = hc.init_log_alpha(jax.random.key(0), shapes, hc.HardConcreteConfig(droprate_init=p),
                            means={"mha": 10.0})
  np.testing.assert_array_equal(again["intermediate"], la["intermediate"])


# ---------------------------------------------------------------- closed forms


def test_prob_nonzero_and_cdf_closed_forms():
  la = np.linspace(-10.0, 10.0, 201).astype(np.float32)
  want = np.clip(_sigmoid(la - BETA * math.log(-GAMMA / ZETA)), EPS, 1 - EPS)
  np.testing.assert_allclose(hc.prob_nonzero(jnp.asarray(la)), want, atol=2e-6)
  np.testing.assert_allclose(hc.cdf(0.0, la), np.clip(_p_zero(la), EPS, 1 - EPS), atol=2e-6)
  np.testing.assert_allclose(1.0 - np.asarray(hc.cdf(1.0, la)),
                             np.clip(_p_one(la), EPS, 1 - EPS), atol=2e-6)
  # The CDF clips to [eps, 1 - eps] (as CoFi's cdf_qz).
  assert float(hc.cdf(0.0, 40.0)) == pytest.approx(EPS)
  assert float(hc.cdf(0.0, -40.0)) == pytest.approx(1 - EPS)
  # Dicts in, dicts out.
  out = hc.prob_nonzero({"head": jnp.zeros((2, 3)), "hidden": jnp.full((4,), 2.0)})
  assert set(out) == {"head", "hidden"}
  np.testing.assert_allclose(out["hidden"], _sigmoid(2.0 + SHIFT), atol=2e-6)


# ---------------------------------------------------------------- deterministic gates


def _soft(la):
  return _sigmoid(np.asarray(la, np.float64) / BETA * 0.8)


def _expected_zeros(la):
  return len(la) - np.sum(1.0 - _p_zero(la))


def test_deterministic_gates_zero_the_expected_number_of_smallest():
  # Row 0: P(z=0) = .355, .25, .475, .142 (none above 1/2): one zero expected, the smallest.
  # Row 1: P(z=0) = .010, .917, .016, .870: two zeros (indices 1 and 3).
  head = np.array([[-1.0, -0.5, -1.5, 0.2], [3.0, -4.0, 2.5, -3.5]], np.float32)
  # P(z=0) = .599, .623, .001, .001: one zero, index 1; index 0 is kept although its
  # P(z=0) > 1/2. Row 1: all kept with large log_alpha.
  inter = np.array([[-2.0, -2.1, 5.0, 5.0], [4.0, 6.0, 5.0, 7.0]], np.float32)
  # Three equal gates with P(z=0) = 2/3 and two near-sure keeps: two zeros among the
  # equal ones, the earlier first.
  tied = -SHIFT - math.log(2.0)
  hidden = np.array([tied, tied, tied, 8.0, 8.0], np.float32)
  assert [round(_expected_zeros(r)) for r in head] == [1, 2]
  assert [round(_expected_zeros(r)) for r in inter] == [1, 0]
  assert round(_expected_zeros(hidden)) == 2
  zeros = {"head": [[2], [1, 3]], "intermediate": [[1], []], "hidden": [0, 1]}

  log_alpha = {"head": jnp.asarray(head), "intermediate": jnp.asarray(inter),
               "hidden": jnp.asarray(hidden)}
  for gates in (hc.deterministic_gates(log_alpha), jax.jit(hc.deterministic_gates)(log_alpha)):
    assert set(gates) == set(log_alpha)
    for name, la in (("head", head), ("intermediate", inter), ("hidden", hidden[None])):
      got = np.asarray(gates[name], np.float64).reshape(la.shape)
      want = _soft(la)
      rows = zeros[name] if name != "hidden" else [zeros[name]]
      for r, idx in enumerate(rows):
        want[r, idx] = 0.0
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
      assert np.array_equal(got == 0.0, want == 0.0)


def test_deterministic_scalar_gates():
  # P(z=0) = .001, .968, .168, .355, .599: zero iff round(P(z=0)) == 1.
  la = np.array([5.0, -5.0, 0.0, -1.0, -2.0], np.float32)
  want = _soft(la)
  want[[1, 4]] = 0.0
  for name in ("mha", "ffn"):
    got = jax.jit(hc.deterministic_gates)({name: jnp.asarray(la)})[name]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert np.array_equal(np.asarray(got) == 0.0, want == 0.0)
  # soft_scale changes the kept values only.
  got = hc.deterministic_gates({"mha": jnp.asarray(la)}, soft_scale=1.0)["mha"]
  np.testing.assert_allclose(got[0], _sigmoid(5.0 / BETA), rtol=1e-6)
  assert float(got[1]) == 0.0


def test_deterministic_gates_match_a_loop_reference_on_random_log_alpha():
  rng = np.random.default_rng(0)
  shapes = hc.gate_shapes(3, 12, 40, 32)
  log_alpha = {k: rng.normal(0.0, 3.0, size=s).astype(np.float32) for k, s in shapes.items()}
  got = jax.jit(hc.deterministic_gates)(log_alpha)

  def reference(la):  # one group, CoFi's rule, in float64 with a Python loop
    out = _soft(la)
    k = round(len(la) - sum(1.0 - min(max(_p_zero(v), EPS), 1 - EPS) for v in la))
    for i in np.argsort(la, kind="stable")[:k]:
      out[i] = 0.0
    return out

  for name, la in log_alpha.items():
    if name in ("mha", "ffn"):
      want = np.concatenate([reference(la[i:i + 1]) for i in range(len(la))])
    elif name == "hidden":
      want = reference(la)
    else:
      want = np.stack([reference(row) for row in la])
    np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=0)
    assert np.array_equal(np.asarray(got[name]) == 0.0, want == 0.0)


# ---------------------------------------------------------------- parameter counts


def _exact_kept(gates, dims):
  """Kept entries of every layer's Q, K, V, attention-output, intermediate and output
  kernels, from boolean keep-masks built weight matrix by weight matrix."""
  L, d, H, hs, F = dims
  on = lambda name, shape: (np.asarray(gates[name]) > 0 if name in gates
                            else np.ones(shape, bool))
  head, mha = on("head", (L, H)), on("mha", (L,))
  inter, ffn = on("intermediate", (L, F)), on("ffn", (L,))
  hidden = on("hidden", (d,))
  total = 0
  for layer in range(L):
    cols = np.repeat(head[layer] & mha[layer], hs)               # [H * hs]
    qkv = hidden[:, None] & cols[None, :]                        # [d, H * hs] each
    attn_out = cols[:, None] & hidden[None, :]                   # [H * hs, d]
    f = inter[layer] & ffn[layer]
    ffn_in = hidden[:, None] & f[None, :]                        # [d, F]
    ffn_out = f[:, None] & hidden[None, :]                       # [F, d]
    assert qkv.shape == (d, H * hs) and ffn_out.shape == (F, d)
    total += 3 * int(qkv.sum()) + int(attn_out.sum()) + int(ffn_in.sum()) + int(ffn_out.sum())
  return total


def test_expected_params_is_the_exact_count_for_0_1_gates():
  dims = hc.ModelDims(num_layers=3, hidden_size=32, num_heads=4, head_size=8,
                      intermediate_size=48)
  full = {k: np.ones(s, np.float32) for k, s in dims.gate_shapes().items()}
  assert hc.prunable_params(dims) == _exact_kept(full, dims) == 3 * (4 * 32 * 32 + 2 * 32 * 48)
  rng = np.random.default_rng(1)
  settings = []
  for keep in (0.9, 0.6, 0.3):
    settings.append({k: (rng.random(s) < keep).astype(np.float32)
                     for k, s in dims.gate_shapes().items()})
  blocks_off = dict(settings[0])
  blocks_off["mha"] = np.array([1, 0, 1], np.float32)
  blocks_off["ffn"] = np.array([0, 1, 0], np.float32)
  settings.append(blocks_off)
  settings.append({k: v for k, v in settings[1].items() if k not in ("hidden", "mha")})
  settings.append({"head": settings[2]["head"], "intermediate": settings[2]["intermediate"]})
  settings.append({k: np.zeros(s, np.float32) for k, s in dims.gate_shapes().items()})
  settings.append({})
  counted = jax.jit(hc.expected_params, static_argnums=1)
  for gates in settings:
    want = _exact_kept(gates, dims)
    assert float(hc.expected_params(gates, dims)) == want
    assert float(counted({k: jnp.asarray(v) for k, v in gates.items()}, dims)) == want
  assert _exact_kept(settings[-2], dims) == 0 and _exact_kept(settings[-1], dims) > 0


def test_expected_sparsity_closed_form_at_uniform_log_alpha():
  dims = hc.ModelDims(2, 32, 4, 8, 64)
  p = _sigmoid(0.5 + SHIFT)  # score of every gate at log_alpha = 0.5
  la = {k: jnp.full(s, 0.5) for k, s in dims.gate_shapes().items()}
  # Every weight needs a hidden gate and two gates of its block (head & mha, or
  # intermediate & ffn): kept with probability p^3.
  assert float(hc.expected_sparsity(la, dims)) == pytest.approx(1 - p ** 3, abs=1e-6)
  del la["hidden"]
  assert float(hc.expected_sparsity(la, dims)) == pytest.approx(1 - p ** 2, abs=1e-6)
  assert float(hc.expected_sparsity({}, dims)) == 0.0


def test_model_dims_from_config_objects():
  # Field names of flatjax's BertConfig (head_dim a property there) and of HF's (no head_dim).
  flatjax_like = types.SimpleNamespace(num_hidden_layers=2, hidden_size=64,
                                       num_attention_heads=4, intermediate_size=128, head_dim=16)
  hf_like = types.SimpleNamespace(num_hidden_layers=6, hidden_size=384, num_attention_heads=12,
                                  intermediate_size=1536)
  assert hc.ModelDims.from_config(flatjax_like) == (2, 64, 4, 16, 128)
  assert hc.ModelDims.from_config(hf_like) == hc.ModelDims(6, 384, 12, 32, 1536)
  own = types.SimpleNamespace(num_layers=1, hidden_size=8, num_heads=2, head_size=3,
                              intermediate_size=5)
  assert hc.ModelDims.from_config(own) == (1, 8, 2, 3, 5)
  assert hc.prunable_params(hc.ModelDims(1, 8, 2, 3, 5)) == 4 * 8 * 6 + 2 * 8 * 5


# ---------------------------------------------------------------- the Lagrangian


def test_target_sparsity_warmup():
  t = jax.jit(lambda s: hc.target_sparsity_at(s, 0.8, 100, start=0.2))
  for step, want in ((0, 0.2), (50, 0.5), (100, 0.8), (250, 0.8), (-5, 0.2)):
    assert float(t(step)) == pytest.approx(want, abs=1e-6)
  assert float(hc.target_sparsity_at(7, 0.9, 0)) == pytest.approx(0.9)
  assert float(hc.target_sparsity_at(30, 0.6, 60)) == pytest.approx(0.3)
  assert float(hc.lagrangian(0.5, 0.8, 2.0, 10.0)) == pytest.approx(2 * -0.3 + 10 * 0.09)


def test_lagrangian_drives_expected_sparsity_to_the_target():
  dims = hc.ModelDims(num_layers=2, hidden_size=32, num_heads=4, head_size=8,
                      intermediate_size=64)
  opt_gates, opt_lambdas = optax.adam(0.1), optax.adam(0.1)

  def loss(log_alpha, lambdas, step, target):
    s = hc.expected_sparsity(log_alpha, dims)
    t = hc.target_sparsity_at(step, target, 100)
    # A mild preference for keeping gates, standing in for the task loss.
    keep = -0.02 * sum(jnp.mean(jnp.log(p)) for p in hc.prob_nonzero(log_alpha).values())
    return hc.lagrangian(s, t, lambdas["lambda1"], lambdas["lambda2"]) + keep

  @jax.jit
  def train_step(log_alpha, lambdas, states, step, target):
    g_gates, g_lambdas = jax.grad(loss, argnums=(0, 1))(log_alpha, lambdas, step, target)
    updates, s_gates = opt_gates.update(g_gates, states[0], log_alpha)
    log_alpha = optax.apply_updates(log_alpha, updates)
    # Ascent on the multipliers: descend on the negated gradient.
    updates, s_lambdas = opt_lambdas.update(jax.tree.map(jnp.negative, g_lambdas), states[1])
    return log_alpha, optax.apply_updates(lambdas, updates), (s_gates, s_lambdas)

  for target in (0.6, 0.9):
    log_alpha = hc.init_log_alpha(jax.random.key(0), dims.gate_shapes())
    lambdas = {"lambda1": jnp.zeros(()), "lambda2": jnp.zeros(())}
    states = (opt_gates.init(log_alpha), opt_lambdas.init(lambdas))
    start = float(hc.expected_sparsity(log_alpha, dims))
    for step in range(300):
      log_alpha, lambdas, states = train_step(log_alpha, lambdas, states, step,
                                              jnp.float32(target))
    s = float(hc.expected_sparsity(log_alpha, dims))
    assert abs(start - target) > 0.1
    assert abs(s - target) < 0.02, (target, s)


# ---------------------------------------------------------------- bad input


def test_bad_input_errors():
  dims = hc.ModelDims(2, 8, 2, 4, 16)
  for target in (1.0, -0.1, float("nan"), "x"):
    with pytest.raises(FlatjaxInputError):
      hc.target_sparsity_at(0, target, 10)
  with pytest.raises(FlatjaxInputError, match="start"):
    hc.target_sparsity_at(0, 0.5, 10, start=1.5)
  with pytest.raises(FlatjaxInputError, match="warmup_steps"):
    hc.target_sparsity_at(0, 0.5, -1)
  with pytest.raises(FlatjaxInputError, match="unknown gate"):
    hc.gate_shapes(2, 2, 16, 8, kinds=("head", "heads"))
  with pytest.raises(FlatjaxInputError, match="more than once"):
    hc.gate_shapes(2, 2, 16, 8, kinds=("head", "head"))
  with pytest.raises(FlatjaxInputError, match="num_layers"):
    hc.gate_shapes(0, 2, 16, 8)
  with pytest.raises(FlatjaxInputError, match="unknown gate"):
    hc.sample_gates(jax.random.key(0), {"layer": jnp.zeros(2)})
  with pytest.raises(FlatjaxInputError, match="unknown gate"):
    hc.prob_nonzero({"heads": jnp.zeros((2, 2))})
  with pytest.raises(FlatjaxInputError, match="dimension"):
    hc.deterministic_gates({"head": jnp.zeros(4)})
  with pytest.raises(FlatjaxInputError, match="dict"):
    hc.deterministic_gates(jnp.zeros(4))
  with pytest.raises(FlatjaxInputError, match="shape"):
    hc.expected_params({"head": jnp.ones((2, 3))}, dims)
  with pytest.raises(FlatjaxInputError, match="shape"):
    hc.expected_sparsity({"hidden": jnp.ones(9)}, dims)
  with pytest.raises(FlatjaxInputError, match="ModelDims"):
    hc.expected_params({}, (2, 8, 2, 4, 16))
  with pytest.raises(FlatjaxInputError, match="head_size"):
    hc.prunable_params(hc.ModelDims(2, 8, 2, 0, 16))
  with pytest.raises(FlatjaxInputError, match="intermediate_size"):
    hc.ModelDims.from_config(types.SimpleNamespace(num_hidden_layers=2, hidden_size=8,
                                                   num_attention_heads=2))
  with pytest.raises(FlatjaxInputError, match="unknown gate"):
    hc.init_log_alpha(jax.random.key(0), {"neurons": (3,)})
  with pytest.raises(FlatjaxInputError, match="dimension"):
    hc.init_log_alpha(jax.random.key(0), {"mha": (2, 3)})
  with pytest.raises(FlatjaxInputError, match="defined for"):
    hc.cdf(1.5, jnp.zeros(3))
  for bad in (dict(temperature=0.0), dict(limit_low=0.1), dict(limit_high=1.0),
              dict(droprate_init=0.0), dict(droprate_init=1.0), dict(eps=0.0),
              dict(temperature=float("nan"))):
    with pytest.raises(FlatjaxInputError):
      hc.HardConcreteConfig(**bad)
