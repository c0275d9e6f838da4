"""flatjax.optim.sam against hand-derived SAM/ASAM math, PyTorch autograd and optax.contrib.sam."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flatjax.optim import GradFn, sam, sam_perturbation
from flatjax.sparsity.masks import apply_mask
from quadratic import A, B_VEC, W0

# tests/quadratic.py's L(w) = 1/2 w^T A w - b^T w, with w split over two leaves
# (w[:2] and w[2:]) so that masks and masked transforms have something to select.


def _quad_loss(params):
  w = jnp.concatenate([params["a"], params["b"]])
  return 0.5 * w @ jnp.asarray(A, jnp.float32) @ w - jnp.asarray(B_VEC, jnp.float32) @ w


def _quad_grad_np(w):
  return A @ w - B_VEC


def _split(w):
  return {"a": jnp.asarray(w[:2], jnp.float32), "b": jnp.asarray(w[2:], jnp.float32)}


def _flat(tree):
  return np.concatenate([np.asarray(tree["a"]), np.asarray(tree["b"])]).astype(np.float64)


def _grad_fn(loss):
  return GradFn(jax.value_and_grad(lambda p: (loss(p), {}), has_aux=True))




@pytest.mark.parametrize("rho", [0.05, 0.5])
def test_sam_gradient_on_quadratic_is_grad_at_w_plus_rho_unit_g(rho):
  g = _quad_grad_np(W0)
  want = _quad_grad_np(W0 + rho * g / np.linalg.norm(g))
  tx = sam(rho)
  params = _split(W0)
  update = jax.jit(lambda g, s, p: tx.update(g, s, p, grad_fn=_grad_fn(_quad_loss)))
  got, state = update(_split(g), tx.init(params), params)
  np.testing.assert_allclose(_flat(got), want, rtol=1e-5, atol=1e-6)
  # the perturbed loss is recorded: L(w + e) by hand
  w = W0 + rho * g / np.linalg.norm(g)
  assert float(state.perturbed_loss) == pytest.approx(0.5 * w @ A @ w - B_VEC @ w, rel=1e-5)


def test_asam_gradient_matches_its_formula():
  rho, eta = 0.5, 0.01
  g = _quad_grad_np(W0)
  t = np.abs(W0) + eta
  e = rho * t * t * g / np.linalg.norm(t * g)
  want = _quad_grad_np(W0 + e)
  tx = sam(rho, adaptive=True, eta=eta)
  params = _split(W0)
  got, _ = tx.update(_split(g), tx.init(params), params, grad_fn=_grad_fn(_quad_loss))
  np.testing.assert_allclose(_flat(got), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(_flat(sam_perturbation(_split(g), params, rho, adaptive=True,
                                                    eta=eta)), e, rtol=1e-5)


def _mlp_params(seed=0):
  rs = np.random.RandomState(seed)
  return {"l1": {"w": rs.randn(4, 8).astype(np.float32) * 0.5,
                 "b": rs.randn(8).astype(np.float32) * 0.1},
          "l2": {"w": rs.randn(8, 3).astype(np.float32) * 0.5,
                 "b": np.zeros(3, np.float32)}}


def _mlp_data(seed=1):
  rs = np.random.RandomState(seed)
  return rs.randn(16, 4).astype(np.float32), rs.randint(0, 3, 16)


def _mlp_loss(params, x, y):
  h = jnp.tanh(x @ params["l1"]["w"] + params["l1"]["b"])
  logits = h @ params["l2"]["w"] + params["l2"]["b"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def test_sam_gradient_on_mlp_matches_pytorch_autograd():
  torch = pytest.importorskip("torch")
  params = _mlp_params()
  x, y = _mlp_data()
  rho = 0.1

  def torch_grad(p):
    t = {k: {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in d.items()}
         for k, d in p.items()}
    h = torch.tanh(torch.tensor(x, dtype=torch.float64) @ t["l1"]["w"] + t["l1"]["b"])
    logits = h @ t["l2"]["w"] + t["l2"]["b"]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    loss.backward()
    return {k: {n: v.grad.numpy() for n, v in d.items()} for k, d in t.items()}

  g = torch_grad(params)
  norm = np.sqrt(sum(float((v ** 2).sum()) for d in g.values() for v in d.values()))
  perturbed = {k: {n: params[k][n] + rho * g[k][n] / norm for n in d} for k, d in g.items()}
  want = torch_grad(perturbed)

  loss = lambda p: _mlp_loss(p, x, y)
  clean = jax.grad(loss)(params)
  tx = sam(rho)
  got, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, grad_fn=_grad_fn(loss)))(
      clean, tx.init(params), params)
  for k in want:
    for n in want[k]:
      np.testing.assert_allclose(got[k][n], want[k][n], rtol=2e-4, atol=2e-6)


def test_sam_equals_optax_contrib_sam_in_opaque_mode_over_several_steps():
  params = _mlp_params()
  x, y = _mlp_data()
  loss = lambda p: _mlp_loss(p, x, y)
  rho, lr = 0.05, 1e-2
  ours = optax.chain(sam(rho), optax.adam(lr))
  theirs = optax.contrib.sam(optax.adam(lr), optax.chain(optax.contrib.normalize(),
                                                         optax.sgd(rho)),
                             sync_period=2, opaque_mode=True)

  def run(tx, grad_fn):
    p, s = params, tx.init(params)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p, grad_fn=grad_fn))
    for _ in range(5):
      u, s = step(p, s)
      p = optax.apply_updates(p, u)
    return p

  got = run(ours, _grad_fn(loss))
  want = run(theirs, lambda p, i: jax.grad(loss)(p))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got, want)
  # and it moved: 5 steps at lr 1e-2 are not a no-op
  assert max(float(jnp.abs(a - b).max()) for a, b in
             zip(jax.tree.leaves(got), jax.tree.leaves(params))) > 1e-3


def test_zero_gradient_gives_finite_update():
  params = _split(W0)
  zero = jax.tree.map(jnp.zeros_like, params)
  for adaptive in (False, True):
    tx = optax.chain(sam(0.05, adaptive=adaptive), optax.adam(1e-3))
    # flat loss: the gradient is zero everywhere
    u, _ = tx.update(zero, tx.init(params), params,
                     grad_fn=_grad_fn(lambda p: 0.0 * _quad_loss(p)))
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(u))
    np.testing.assert_array_equal(_flat(u), 0.0)
  # optax.contrib.sam divides by the bare norm: NaN (why flatjax adds eps)
  theirs = optax.contrib.sam(optax.adam(1e-3), optax.chain(optax.contrib.normalize(),
                                                           optax.sgd(0.05)),
                             sync_period=2, opaque_mode=True)
  u, _ = theirs.update(zero, theirs.init(params), params,
                       grad_fn=lambda p, i: jax.tree.map(lambda v: 0.0 * v, p))
  assert np.isnan(_flat(u)).all()


def test_composes_with_clip_by_global_norm():
  rho = 0.05
  g = _quad_grad_np(W0)
  g_adv = _quad_grad_np(W0 + rho * g / np.linalg.norm(g))
  tx = optax.chain(sam(rho), optax.clip_by_global_norm(1.0), optax.sgd(1.0))
  params = _split(W0)
  u, _ = tx.update(_split(g), tx.init(params), params, grad_fn=_grad_fn(_quad_loss))
  # sgd(1) returns -(clipped perturbed gradient); clipping acts on the perturbed one
  np.testing.assert_allclose(_flat(u), -g_adv / max(1.0, np.linalg.norm(g_adv)), rtol=1e-5)


def test_inject_hyperparams_schedules_rho():
  rhos = [0.1, 0.3, 0.2]
  tx = optax.inject_hyperparams(sam)(rho=lambda count: jnp.array(rhos)[count])
  params = _split(W0)
  state = tx.init(params)
  update = jax.jit(lambda g, s, p: tx.update(g, s, p, grad_fn=_grad_fn(_quad_loss)))
  g = _quad_grad_np(W0)
  for rho in rhos:
    got, state = update(_split(g), state, params)
    want = _quad_grad_np(W0 + rho * g / np.linalg.norm(g))
    np.testing.assert_allclose(_flat(got), want, rtol=1e-5, atol=1e-6)
  # a rho schedule passed straight to sam does the same
  tx = sam(lambda count: 0.1 * (count + 1))
  s = tx.init(params)
  for i in range(2):
    got, s = tx.update(_split(g), s, params, grad_fn=_grad_fn(_quad_loss))
  want = _quad_grad_np(W0 + 0.2 * g / np.linalg.norm(g))
  np.testing.assert_allclose(_flat(got), want, rtol=1e-5, atol=1e-6)


def test_optax_masked_perturbs_only_the_selected_leaves():
  # only leaf "a" (w[0:2]) is perturbed, by its own normalised gradient; "b" gets
  # the clean gradient passed through by optax.masked.
  rho = 0.2
  params = _split(W0)
  g = _quad_grad_np(W0)
  e = np.zeros(3)
  e[:2] = rho * g[:2] / np.linalg.norm(g[:2])
  g_adv = _quad_grad_np(W0 + e)
  tx = optax.masked(sam(rho), {"a": True, "b": False})
  grad_fn = GradFn(jax.value_and_grad(lambda p: (_quad_loss(p), {}), has_aux=True),
                   base_params=params)
  got, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, grad_fn=grad_fn))(
      _split(g), tx.init(params), params)
  np.testing.assert_allclose(np.asarray(got["a"]), g_adv[:2], rtol=1e-5)
  np.testing.assert_allclose(np.asarray(got["b"]), g[2:], rtol=1e-6)


@pytest.mark.parametrize("adaptive", [False, True])
def test_pruned_weights_are_not_perturbed(adaptive):
  # The loss sees apply_mask(params, mask), as flatjax's train step does: pruned
  # entries get zero gradient, so zero perturbation, so SAM's gradient there is 0.
  mask = {"a": np.array([True, False]), "b": np.array([True])}
  masked_loss = lambda p: _quad_loss(apply_mask(p, mask))
  params = _split(W0)
  g = jax.grad(masked_loss)(params)
  e = sam_perturbation(g, params, 0.5, adaptive=adaptive)
  assert float(e["a"][1]) == 0.0
  seen = []
  vg = jax.value_and_grad(lambda p: (masked_loss(p), {}), has_aux=True)

  def recording(p):
    seen.append(p)
    return vg(p)
  tx = sam(0.5, adaptive=adaptive)
  got, _ = tx.update(g, tx.init(params), params, grad_fn=GradFn(recording))
  assert float(seen[0]["a"][1]) == float(params["a"][1])  # evaluated unperturbed there
  assert float(got["a"][1]) == 0.0
  # and by hand, with the pruned weight zeroed in the forward pass
  keep = np.array([1.0, 0.0, 1.0])
  gn = keep * _quad_grad_np(W0 * keep)
  t = (np.abs(W0) + 0.01) if adaptive else np.ones(3)
  e_np = 0.5 * t * t * gn / np.linalg.norm(t * gn)
  want = keep * _quad_grad_np((W0 + e_np) * keep)
  np.testing.assert_allclose(_flat(got), want, rtol=1e-5, atol=1e-6)


def test_m_sharpness_perturbs_each_shard_with_its_own_gradient():
  # Two shards with their own linear terms b_i: each computes e_i from its local
  # gradient; the result is the mean of the per-shard perturbed gradients.
  rho = 0.3
  bs = np.stack([B_VEC, -0.5 * B_VEC + 1.0])
  want = np.mean([A @ (W0 + rho * (A @ W0 - b) / np.linalg.norm(A @ W0 - b)) - b
                  for b in bs], axis=0)
  params = _split(W0)
  tx = sam(rho, batch_axis_name="data")

  def shard(b):
    loss = lambda p: 0.5 * jnp.concatenate([p["a"], p["b"]]) @ jnp.asarray(
        A, jnp.float32) @ jnp.concatenate([p["a"], p["b"]]) - b @ jnp.concatenate(
            [p["a"], p["b"]])
    g = jax.grad(loss)(params)
    return tx.update(g, tx.init(params), params, grad_fn=_grad_fn(loss))[0]

  got = jax.vmap(shard, axis_name="data")(jnp.asarray(bs, jnp.float32))
  for i in range(2):  # pmean: every shard holds the average
    np.testing.assert_allclose(_flat(jax.tree.map(lambda v: v[i], got)), want, rtol=1e-5)
  # not the same as SAM on the averaged gradient
  g_mean = A @ W0 - bs.mean(0)
  global_sam = A @ (W0 + rho * g_mean / np.linalg.norm(g_mean)) - bs.mean(0)
  assert np.abs(global_sam - want).max() > 1e-3


def test_plain_grad_fn_works_without_loss_report():
  params = _split(W0)
  g = _quad_grad_np(W0)
  tx = sam(0.05)
  got, state = tx.update(_split(g), tx.init(params), params,
                         grad_fn=lambda p, *unused: jax.grad(_quad_loss)(p))
  np.testing.assert_allclose(_flat(got), _quad_grad_np(W0 + 0.05 * g / np.linalg.norm(g)),
                             rtol=1e-5)
  assert np.isnan(float(state.perturbed_loss))


def test_missing_grad_fn_or_params_is_a_clear_error():
  params = _split(W0)
  tx = sam(0.05)
  with pytest.raises(ValueError, match="grad_fn"):
    tx.update(params, tx.init(params), params)
  with pytest.raises(ValueError, match="needs params"):
    tx.update(params, tx.init(params), None, grad_fn=_grad_fn(_quad_loss))


_SHARD_MAP_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
from flatjax.optim import GradFn, sam
from quadratic import A, B_VEC, W0
assert len(jax.devices()) == 2, jax.devices()
rho = 0.3
bs = np.stack([B_VEC, -0.5 * B_VEC + 1.0]).astype(np.float32)
params = {"w": jnp.asarray(W0, jnp.float32)}
tx = sam(rho, batch_axis_name="data")

def shard(b):
  loss = lambda p: 0.5 * p["w"] @ jnp.asarray(A, jnp.float32) @ p["w"] - b[0] @ p["w"]
  vg = jax.value_and_grad(lambda p: (loss(p), {}), has_aux=True)
  # params replicated over "data" would get their gradient summed over the axis
  # (jax.lax.pcast to "varying", formerly pvary, keeps each shard's own gradient).
  local = jax.lax.pcast(params, "data", to="varying")
  g = jax.grad(loss)(local)
  return tx.update(g, tx.init(local), local, grad_fn=GradFn(vg))[0]["w"][None]

mesh = Mesh(np.array(jax.devices()), ("data",))
f = jax.jit(jax.shard_map(shard, mesh=mesh, in_specs=P("data"), out_specs=P("data")))
got = np.asarray(f(jnp.asarray(bs)))
want = np.mean([A @ (W0 + rho * (A @ W0 - b) / np.linalg.norm(A @ W0 - b)) - b for b in bs], 0)
np.testing.assert_allclose(got, np.stack([want, want]), rtol=1e-5)
print("ok")
"""


def test_m_sharpness_under_shard_map_on_two_devices(tmp_path):
  # A fresh process: the host-platform device count is fixed when JAX starts.
  import os
  import subprocess
  import sys
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             PYTHONPATH=os.pathsep.join([os.path.dirname(__file__),
                                         os.environ.get("PYTHONPATH", "")]))
  out = subprocess.run([sys.executable, "-c", _SHARD_MAP_SCRIPT], env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().endswith("ok")


def test_sam_on_perturbs_only_the_selected_leaves_and_returns_every_gradient():
  # SAM-ON by hand: e from leaf a's gradient alone, zero on b; every leaf gets grad(w + e).
  rho = 0.3
  params = _split(W0)
  g = _quad_grad_np(W0)
  e = np.zeros(3)
  e[:2] = rho * g[:2] / np.linalg.norm(g[:2])
  tx = sam(rho, perturb=lambda p: {"a": True, "b": False})
  got, _ = tx.update(_split(g), tx.init(params), params, grad_fn=_grad_fn(_quad_loss))
  np.testing.assert_allclose(_flat(got), _quad_grad_np(W0 + e), rtol=1e-5)


def test_late_sam_passes_the_gradient_through_until_it_is_active():
  # active from update 2: updates 0 and 1 return the clean gradient (no extra pass,
  # perturbed loss NaN), update 2 the SAM gradient.
  rho = 0.2
  params = _split(W0)
  g = _quad_grad_np(W0)
  calls = []

  def counting(p):
    calls.append(1)
    return jax.grad(_quad_loss)(p)
  tx = sam(rho, active=lambda count: count >= 2)
  step = jax.jit(lambda s: tx.update(_split(g), s, params, grad_fn=counting))
  state = tx.init(params)
  for i in range(3):
    got, state = step(state)
    want = g if i < 2 else _quad_grad_np(W0 + rho * g / np.linalg.norm(g))
    np.testing.assert_allclose(_flat(got), want, rtol=1e-5)
  assert np.isnan(float(state.perturbed_loss)) and len(calls) == 1   # traced once
