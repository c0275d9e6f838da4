"""The optimizer registry and the paper's schedule, against hand-derived values."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flatjax.errors import FlatjaxInputError
from flatjax.optim import OptimizerConfig, lr_schedule, make_optimizer, names, register
from flatjax.optim import registry


def test_linear_decay_to_zero_without_warmup():
  sched = lr_schedule(OptimizerConfig(learning_rate=2e-5), total_steps=100)
  # lr_t = 2e-5 * (1 - t/100)
  for t, want in [(0, 2e-5), (25, 1.5e-5), (50, 1e-5), (99, 2e-7), (100, 0.0)]:
    assert float(sched(t)) == pytest.approx(want, rel=1e-5, abs=1e-12)


def test_warmup_then_linear_decay():
  sched = lr_schedule(OptimizerConfig(learning_rate=1.0, warmup_steps=10), total_steps=110)
  # rises 0 -> 1 over 10 steps, then falls 1 -> 0 over the remaining 100.
  for t, want in [(0, 0.0), (5, 0.5), (10, 1.0), (60, 0.5), (110, 0.0)]:
    assert float(sched(t)) == pytest.approx(want, abs=1e-6)


def test_warmup_then_cosine_or_constant():
  cosine = lr_schedule(OptimizerConfig(learning_rate=1.0, warmup_steps=10, schedule="cosine"),
                       total_steps=110)
  # 0 -> 1 over 10 steps, then (1 + cos(pi t / 100)) / 2 over the remaining 100.
  for t, want in [(5, 0.5), (10, 1.0), (35, (1 + np.cos(np.pi / 4)) / 2), (60, 0.5),
                  (85, (1 + np.cos(3 * np.pi / 4)) / 2), (110, 0.0)]:
    assert float(cosine(t)) == pytest.approx(want, abs=1e-6), t
  constant = lr_schedule(OptimizerConfig(learning_rate=0.3, warmup_steps=4,
                                         schedule="constant"), total_steps=50)
  assert [round(float(constant(t)), 6) for t in (0, 2, 4, 30, 50)] == [0.0, 0.15, 0.3, 0.3, 0.3]
  with pytest.raises(FlatjaxInputError, match="unknown schedule 'step'"):
    make_optimizer(OptimizerConfig("adam", schedule="step"), 10)


def test_adam_step_matches_hand_computed_update():
  # One Adam step from zero moments: m = (1-b1) g, v = (1-b2) g^2, bias-corrected
  # m_hat = g, v_hat = g^2, so the update is -lr * g / (|g| + eps).
  tx = make_optimizer(OptimizerConfig("adam", learning_rate=0.1), total_steps=10)
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = {"w": jnp.array([0.5, -4.0, 0.0])}
  updates, _ = tx.update(grads, tx.init(params), params)
  g = np.array([0.5, -4.0, 0.0])
  # float32 bias correction (1 - 0.999 rounds) costs ~1e-5 relative.
  np.testing.assert_allclose(updates["w"], -0.1 * g / (np.abs(g) + 1e-8), rtol=2e-5)


def test_adamw_decays_weights_decoupled():
  tx = make_optimizer(OptimizerConfig("adamw", learning_rate=0.1, weight_decay=0.5), 10)
  params = {"w": jnp.array([2.0])}
  updates, _ = tx.update({"w": jnp.array([0.0])}, tx.init(params), params)
  # zero gradient: only the decoupled decay -lr * wd * w remains.
  np.testing.assert_allclose(updates["w"], [-0.1 * 0.5 * 2.0], rtol=1e-6)


def test_clipping_bounds_the_global_norm():
  tx = make_optimizer(OptimizerConfig("adamw", learning_rate=1.0, clip_norm=1.0), 10)
  params = {"w": jnp.zeros(2)}
  state = tx.init(params)
  _, state = tx.update({"w": jnp.array([30.0, 40.0])}, state, params)
  # chain state: (clip, adamw); adam's first moment saw the clipped grad (0.6, 0.8).
  mu = optax.tree_utils.tree_get(state, "mu")
  np.testing.assert_allclose(mu["w"], 0.1 * np.array([0.6, 0.8]), rtol=1e-6)


def test_extra_grad_fn_argument_is_accepted_by_every_entry():
  params = {"w": jnp.ones(2)}
  for name in names():
    tx = make_optimizer(OptimizerConfig(name), 5)
    tx.update(params, tx.init(params), params, grad_fn=lambda p, batch=None: p)


def test_bad_names_and_values_are_input_errors():
  with pytest.raises(FlatjaxInputError, match="unknown optimizer 'lamb'"):
    make_optimizer(OptimizerConfig("lamb"), 10)
  with pytest.raises(FlatjaxInputError, match="learning rate"):
    make_optimizer(OptimizerConfig("adam", learning_rate=0.0), 10)
  with pytest.raises(FlatjaxInputError, match="adamw"):
    make_optimizer(OptimizerConfig("adam", weight_decay=0.01), 10)
  with pytest.raises(ValueError, match="already registered"):
    register("adam")(lambda c, n: None)


def test_sam_entry_is_adam_on_the_sam_gradient():
  # One step from zero moments: -lr * g_adv / (|g_adv| + eps), g_adv the gradient of
  # L(w) = 1/2 |w|^2 (grad w) at w + rho w/|w|: g_adv = w (1 + rho/|w|).
  from flatjax.optim import GradFn
  import jax
  w = np.array([3.0, -4.0])
  tx = make_optimizer(OptimizerConfig("sam", learning_rate=0.1, settings={"rho": 0.5}), 10)
  params = {"w": jnp.asarray(w, jnp.float32)}
  grad_fn = GradFn(jax.value_and_grad(lambda p: (0.5 * jnp.sum(p["w"] ** 2), {}), has_aux=True))
  updates, _ = tx.update(params, tx.init(params), params, grad_fn=grad_fn)
  g_adv = w * (1 + 0.5 / 5.0)
  np.testing.assert_allclose(updates["w"], -0.1 * g_adv / (np.abs(g_adv) + 1e-8), rtol=2e-5)


def test_variant_defaults_and_bad_settings():
  for name, bad, match in [("sam", {"k": 5.0}, "has no setting k"),
                           ("looksam", {"k": 2.5}, "whole number"),
                           ("looksam", {"k": float("nan")}, "whole number"),
                           ("looksam", {"k": float("inf")}, "whole number"),
                           ("looksam", {"k": 0.0}, "k must be positive"),
                           ("gsam", {"rho_min": 0.1}, "rho_min <= rho"),
                           ("asam", {"rho": -1.0}, "rho must be positive"),
                           ("adam", {"rho": 0.05}, "has no setting rho"),
                           ("looksam", {"alpha": -1.0}, "alpha must be non-negative"),
                           ("gsam", {"alpha": float("nan")}, "alpha must be non-negative"),
                           ("asam", {"eta": -0.1}, "eta must be non-negative")]:
    with pytest.raises(FlatjaxInputError, match=match):
      make_optimizer(OptimizerConfig(name, settings=bad), 10)
  assert {"sam", "asam", "gsam", "looksam"} <= set(names())


@pytest.mark.parametrize("field,value,match", [
    ("weight_decay", float("nan"), "weight decay"), ("weight_decay", -0.1, "weight decay"),
    ("warmup_steps", -1, "warmup steps"), ("b2", 1.0, "b1, b2 < 1"), ("eps", 0.0, "eps > 0"),
    ("learning_rate", float("inf"), "learning rate"), ("clip_norm", 0.0, "clip norm")])
def test_shared_settings_out_of_range_are_input_errors(field, value, match):
  with pytest.raises(FlatjaxInputError, match=match):
    make_optimizer(OptimizerConfig("adamw", **{field: value}), 10)


@pytest.mark.parametrize("name", registry.names())
def test_settings_lists_what_each_optimizer_takes(name):
  # Every listed setting is accepted; a setting not listed is refused.
  listed = registry.settings(name)
  registry.make_optimizer(registry.OptimizerConfig(name=name, settings=listed), 10)
  with pytest.raises(FlatjaxInputError, match="has no setting bogus"):
    registry.make_optimizer(registry.OptimizerConfig(name=name, settings={"bogus": 1.0}), 10)


def test_settings_defaults():
  assert registry.settings("sam") == {"rho": 0.05}
  assert registry.settings("adam") == {}
  assert registry.settings("asam") == {"rho": 0.5, "eta": 0.01}


def test_a_new_variant_is_one_register_call_with_its_settings():
  """SAM on plain SGD, registered with its typed settings: the train step and the
  CLI's --rho then reach it by name; one step is -lr * g(w + rho g/|g|) by hand."""
  import dataclasses
  import jax
  import flatjax
  from flatjax.optim import GradFn

  @dataclasses.dataclass(frozen=True)
  class SAMSGDSettings:
    rho: float = 0.5

  @register("sam_sgd", SAMSGDSettings)
  def sam_sgd(config, settings, total_steps):
    return optax.chain(flatjax.sam(settings.rho),
                       optax.sgd(lr_schedule(config, total_steps)))
  try:
    assert registry.settings("sam_sgd") == {"rho": 0.5} and "sam_sgd" in names()
    w = np.array([3.0, -4.0])
    params = {"w": jnp.asarray(w, jnp.float32)}
    grad_fn = GradFn(jax.value_and_grad(lambda p: (0.5 * jnp.sum(p["w"] ** 2), {}),
                                        has_aux=True))
    for given, rho in (({}, 0.5), ({"rho": 0.1}, 0.1)):
      tx = make_optimizer(OptimizerConfig("sam_sgd", learning_rate=0.1, settings=given), 10)
      updates, _ = tx.update(params, tx.init(params), params, grad_fn=grad_fn)
      np.testing.assert_allclose(updates["w"], -0.1 * w * (1 + rho / 5.0), rtol=1e-5)
    with pytest.raises(FlatjaxInputError, match="has no setting eta"):
      make_optimizer(OptimizerConfig("sam_sgd", settings={"eta": 1.0}), 10)
  finally:
    del registry._REGISTRY["sam_sgd"], registry.SETTINGS["sam_sgd"]


def test_latesam_turns_sam_on_for_the_last_fifth_and_samon_perturbs_layernorms():
  import jax
  params = {"w": jnp.asarray([3.0, -4.0])}
  vg = jax.value_and_grad(lambda p: 0.5 * jnp.sum(p["w"] ** 2))
  tx = make_optimizer(OptimizerConfig("latesam", learning_rate=0.1), 10)
  state = tx.init(params)
  on = []
  for _ in range(10):
    _, state = tx.update(params, state, params, grad_fn=vg)
    on.append(not np.isnan(float(state[0].perturbed_loss)))
  assert on == [False] * 8 + [True] * 2          # start 0.8 of 10 steps
  tree = {"bert": {"embeddings": {"LayerNorm": {"scale": 1.0, "bias": 0.0},
                                  "word_embeddings": {"embedding": 0.0}}},
          "classifier": {"kernel": 0.0}}
  assert registry.normalization_leaves(tree) == {
      "bert": {"embeddings": {"LayerNorm": {"scale": True, "bias": True},
                              "word_embeddings": {"embedding": False}}},
      "classifier": {"kernel": False}}
  assert (registry.settings("msam"), registry.settings("samon")) == ({"rho": 0.05},
                                                                     {"rho": 0.5})
  with pytest.raises(FlatjaxInputError, match="start must be in"):
    make_optimizer(OptimizerConfig("latesam", settings={"start": 1.0}), 10)
