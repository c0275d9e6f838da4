"""flatjax.optim.looksam against LookSAM's update (Liu et al. 2022) and against SAM."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flatjax.optim import GradFn, looksam, sam
from quadratic import GRAD_FN, W0, grad, loss

def _run(tx, w0, steps, lr):
  params = {"w": jnp.asarray(w0, jnp.float32)}
  state = tx.init(params)
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p, grad_fn=GRAD_FN))
  out = []
  for _ in range(steps):
    u, state = step(params, state)
    out.append(np.asarray(u["w"]))
    params = optax.apply_updates(params, u)
  return out, state


def test_k1_is_sam():
  w0 = W0
  got, _ = _run(optax.chain(looksam(0.1, k=1), optax.sgd(0.1)), w0, 5, 0.1)
  want, _ = _run(optax.chain(sam(0.1), optax.sgd(0.1)), w0, 5, 0.1)
  np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-6)


def test_reuses_the_orthogonal_component_between_exact_steps():
  rho, k, alpha, lr = 0.2, 3, 0.7, 0.1
  w = W0.copy()
  want = []
  g_v = None
  for t in range(7):  # by hand, float64: SGD on LookSAM's gradient
    g = grad(w)
    if t % k == 0:
      g_s = grad(w + rho * g / np.linalg.norm(g))
      g_v = g_s - (g @ g_s) / (g @ g) * g
    else:
      g_s = g + alpha * np.linalg.norm(g) / np.linalg.norm(g_v) * g_v
    want.append(-lr * g_s)
    w = w - lr * g_s
  got, state = _run(optax.chain(looksam(rho, k=k, alpha=alpha), optax.sgd(lr)),
                    W0, 7, lr)
  np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=1e-6)
  # its one extra buffer is shaped like the params
  lk = state[0]
  assert jax.tree.structure(lk.g_v) == jax.tree.structure({"w": 0})
  assert lk.g_v["w"].shape == (3,)


def test_grad_fn_runs_only_on_exact_steps_under_jit():
  calls = []

  def loss_with_probe(p):
    jax.debug.callback(lambda: calls.append(1))
    return loss(p), {}
  grad_fn = GradFn(jax.value_and_grad(loss_with_probe, has_aux=True))
  tx = looksam(0.05, k=4)
  params = {"w": jnp.asarray(W0, jnp.float32)}
  state = tx.init(params)
  step = jax.jit(lambda s: tx.update(jax.grad(loss)(params), s, params, grad_fn=grad_fn))
  for _ in range(8):
    _, state = step(state)
  jax.effects_barrier()
  assert len(calls) == 2  # steps 0 and 4
