"""flatjax.sparsity.keep_pruned: in a user loop whose forward pass never applies the mask,
pruned weights stay exactly 0.0 for 20 steps under every registry optimizer with weight
decay (starting from nonzero values); one SAM step equals masked SAM written out by hand;
without the wrapper the same loop revives them."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flatjax
from flatjax.optim import OptimizerConfig, make_optimizer, names
from flatjax.sparsity import keep_pruned
from quadratic import A, B_VEC, W0, grad

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(16, 6)), jnp.float32)
Y = jnp.asarray(RNG.integers(0, 2, 16), jnp.int32)
PARAMS = {"dense": {"kernel": jnp.asarray(RNG.normal(size=(6, 5)), jnp.float32),
                    "bias": jnp.zeros(5, jnp.float32)},
          "head": {"kernel": jnp.asarray(RNG.normal(size=(5, 2)), jnp.float32)}}
# Half of the first kernel pruned; the bias and the head are outside the scope.
PRUNED = np.zeros((6, 5), bool)
PRUNED[::2, 1:4] = True
MASK = {"dense": {"kernel": jnp.asarray(~PRUNED), "bias": None}, "head": {"kernel": None}}


def _loss(params):   # never applies the mask
  h = jnp.tanh(X @ params["dense"]["kernel"] + params["dense"]["bias"])
  return optax.softmax_cross_entropy_with_integer_labels(h @ params["head"]["kernel"], Y).mean()


def _train(tx, steps=20):
  params, state = PARAMS, tx.init(PARAMS)
  grad_fn = jax.value_and_grad(_loss)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(_loss)(params), state, params, grad_fn=grad_fn)
    return optax.apply_updates(params, updates), state
  for _ in range(steps):
    params, state = step(params, state)
  return params


@pytest.mark.parametrize("name", names())
def test_pruned_weights_stay_exactly_zero_under_every_optimizer(name):
  decay = 0.0 if name == "adam" else 0.1       # adam takes none; adamw and the SAMs do
  inner = make_optimizer(OptimizerConfig(name=name, learning_rate=0.05, weight_decay=decay,
                                         swa="0.5:2"), 20)
  kernel = np.asarray(_train(keep_pruned(inner, MASK))["dense"]["kernel"])
  assert np.all(kernel[PRUNED] == 0.0)         # from nonzero starting values
  assert np.abs(kernel[~PRUNED] - np.asarray(PARAMS["dense"]["kernel"])[~PRUNED]).min() > 0
  # The same loop without the wrapper moves them.
  unwrapped = np.asarray(_train(inner)["dense"]["kernel"])
  assert np.abs(unwrapped[PRUNED]).min() > 0


def test_one_sam_step_is_masked_sam_by_hand():
  # m = (1, 0, 1) on the quadratic, the pruned weight nonzero at the start: the clean
  # gradient masked, g_m = m grad(w), e = rho g_m / |g_m|, then
  # w' = m (w - lr m grad(m w + e)) (the pruned weight lands on 0).
  rho, lr = 0.2, 0.5
  m = np.array([1.0, 0.0, 1.0])
  g = m * grad(W0)
  e = rho * g / np.linalg.norm(g)
  want = m * (W0 - lr * m * grad(m * W0 + e))
  tx = keep_pruned(optax.chain(flatjax.sam(rho), optax.sgd(lr)), {"w": jnp.asarray(m > 0)})
  params = {"w": jnp.asarray(W0, jnp.float32)}
  loss = lambda p: 0.5 * p["w"] @ jnp.asarray(A, jnp.float32) @ p["w"] - jnp.asarray(
      B_VEC, jnp.float32) @ p["w"]
  updates, state = tx.update(jax.grad(loss)(params), tx.init(params), params,
                             grad_fn=jax.value_and_grad(loss))
  got = optax.apply_updates(params, updates)["w"]
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
  assert float(got[1]) == 0.0
  w = m * W0 + e          # the perturbed loss was evaluated at the masked point
  assert float(state.inner[0].perturbed_loss) == pytest.approx(
      0.5 * w @ A @ w - B_VEC @ w, rel=1e-5)


def test_the_mask_in_the_state_can_be_replaced_and_params_are_required():
  tx = keep_pruned(optax.sgd(0.1), None)
  state = tx.init(PARAMS)
  assert all(bool(jnp.all(m)) for m in jax.tree.leaves(state.mask))   # None keeps all
  state = state._replace(mask=flatjax.sparsity.boolean_tree(MASK, PARAMS))
  updates, _ = tx.update(PARAMS, state, PARAMS)
  new = optax.apply_updates(PARAMS, updates)["dense"]["kernel"]
  assert np.all(np.asarray(new)[PRUNED] == 0.0)
  with pytest.raises(ValueError, match="needs params"):
    tx.update(PARAMS, state)
