"""The quadratic the optimizer tests derive their expected values from by hand.

L(w) = 1/2 w^T A w - b^T w, so grad L(w) = A w - b (float64 numpy for the
expected values, float32 JAX for the code under test). Params are ``{"w": w}``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from flatjax.optim import GradFn

A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, -0.3], [0.0, -0.3, 1.0]])
B_VEC = np.array([1.0, -2.0, 0.5])
W0 = np.array([0.7, -1.2, 2.0])


def loss(params):
  w = params["w"]
  return 0.5 * w @ jnp.asarray(A, jnp.float32) @ w - jnp.asarray(B_VEC, jnp.float32) @ w


def grad(w):
  return A @ w - B_VEC


GRAD_FN = GradFn(jax.value_and_grad(lambda p: (loss(p), {}), has_aux=True))
