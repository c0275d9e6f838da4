"""flatjax.optim.grad_fn: every form of ``grad_fn`` a user's loop may hand SAM (optax's
``grad_fn(params, i)``, ``jax.grad``, ``jax.value_and_grad`` with and without aux) gives
the SAM step derived by hand on tests/quadratic.py's loss; the value_and_grad forms report
the perturbed loss; under ``optax.masked`` a plain function works wrapped in GradFn with
the step's params, and is a one-line error without them."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import flatjax
from flatjax.optim import GradFn
from quadratic import A, B_VEC, W0, grad, loss

RHO, LR = 0.1, 0.5


def _hand_sam_step(w):
  """One SAM step on plain SGD, by hand: w - lr * grad(w + rho g / ||g||)."""
  g = grad(w)
  return w - LR * grad(w + RHO * g / np.linalg.norm(g))


def _quad(w):
  return 0.5 * w @ A @ w - B_VEC @ w


def test_optax_contrib_sam_docstring_example_with_flatjax_sam_in_its_place():
  # optax.contrib.sam's example: grad_fn = jax.grad(lambda params, _: loss(params, batch)),
  # opt.update(updates, state, params, grad_fn=grad_fn), optax.apply_updates.
  params = {"w": jnp.asarray(W0, jnp.float32)}
  opt = optax.chain(flatjax.sam(RHO), optax.sgd(LR))
  state = opt.init(params)
  grad_fn = jax.grad(lambda params, _: loss(params))
  updates = jax.grad(loss)(params)
  updates, state = opt.update(updates, state, params, grad_fn=grad_fn)
  params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.asarray(params["w"]), _hand_sam_step(W0), rtol=1e-5)


@pytest.mark.parametrize("form", ["grad", "grad_with_index", "value_and_grad",
                                  "value_and_grad_with_aux", "GradFn"])
def test_every_grad_fn_form_gives_the_sam_step(form):
  grad_fn = {
      "grad": jax.grad(loss),
      "grad_with_index": jax.grad(lambda p, i: loss(p)),
      "value_and_grad": jax.value_and_grad(loss),
      "value_and_grad_with_aux": jax.value_and_grad(lambda p: (loss(p), {"x": 1.0}),
                                                    has_aux=True),
      "GradFn": GradFn(jax.grad(lambda p, i: loss(p))),
  }[form]
  params = {"w": jnp.asarray(W0, jnp.float32)}
  tx = optax.chain(flatjax.sam(RHO), optax.sgd(LR))
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p, grad_fn=grad_fn))
  updates, state = step(params, tx.init(params))
  np.testing.assert_allclose(np.asarray(optax.apply_updates(params, updates)["w"]),
                             _hand_sam_step(W0), rtol=1e-5)
  perturbed = float(state[0].perturbed_loss)
  if form.startswith("value_and_grad"):
    g = grad(W0)
    assert perturbed == pytest.approx(_quad(W0 + RHO * g / np.linalg.norm(g)), rel=1e-5)
  else:
    assert np.isnan(perturbed)


def _two_leaves(w):
  return {"a": jnp.asarray(w[:2], jnp.float32), "b": jnp.asarray(w[2:], jnp.float32)}


def _two_leaf_loss(p):
  return loss({"w": jnp.concatenate([p["a"], p["b"]])})


def test_optax_masked_sam_with_a_plain_grad_fn_equals_masked_sam_by_hand():
  # SAM on leaf "a" only: e from a's gradient, zero on "b"; "a" gets grad(w + e)[:2],
  # "b" its clean gradient; then SGD.
  params = _two_leaves(W0)
  g = grad(W0)
  e = np.zeros(3)
  e[:2] = RHO * g[:2] / np.linalg.norm(g[:2])
  want = W0 - LR * np.concatenate([grad(W0 + e)[:2], g[2:]])
  tx = optax.chain(optax.masked(flatjax.sam(RHO), {"a": True, "b": False}), optax.sgd(LR))
  grads = jax.grad(_two_leaf_loss)(params)
  grad_fn = GradFn(jax.grad(_two_leaf_loss), base_params=params)
  updates, _ = tx.update(grads, tx.init(params), params, grad_fn=grad_fn)
  got = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.concatenate([got["a"], got["b"]]), want, rtol=1e-5)
  # Unwrapped, the plain function cannot be evaluated on the masked params: said in one line.
  with pytest.raises(ValueError, match="GradFn.*base_params"):
    tx.update(grads, tx.init(params), params, grad_fn=jax.grad(_two_leaf_loss))


def test_a_grad_fn_returning_something_else_is_a_clear_error():
  params = {"w": jnp.asarray(W0, jnp.float32)}
  tx = flatjax.sam(RHO)
  with pytest.raises(ValueError, match="neither gradients shaped like the params"):
    tx.update(params, tx.init(params), params, grad_fn=lambda p: [p["w"], p["w"], p["w"]])
