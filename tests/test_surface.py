"""Filter-normalised directions and loss surfaces (Li et al. 2018).

Filter norms are recomputed here with numpy from the rules written out by
hand (Dense kernel [in, out]: columns; embedding [V, d]: rows; other >= 2-D
leaves: the last axis); surfaces of a quadratic are compared with their
closed form

    f(t + a d1 + b d2) = f(t) + a g.d1 + b g.d2
                         + 1/2 (a^2 d1.H d1 + 2 a b d1.H d2 + b^2 d2.H d2),

g = H t + c the gradient at t, computed in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flatjax.errors import FlatjaxInputError
from flatjax.sharpness import hessian as hs
from flatjax.sharpness import surface as sf

RNG = np.random.default_rng(0)
PARAMS = {
    "dense": {"kernel": RNG.normal(size=(5, 7)), "bias": RNG.normal(size=7)},
    "embed": {"embedding": RNG.normal(size=(11, 4))},
    "LayerNorm": {"scale": 1 + 0.1 * RNG.normal(size=4), "bias": RNG.normal(size=4)},
    "conv": {"kernel": RNG.normal(size=(3, 3, 2, 6))},
    "temperature": np.float64(0.5),
}
PARAMS = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), PARAMS)
ONE_D = [("dense", "bias"), ("LayerNorm", "scale"), ("LayerNorm", "bias")]


def get(tree, path):
  for k in path:
    tree = tree[k]
  return np.asarray(tree, np.float64)


def filter_norms(a, filters_axis):
  others = tuple(i for i in range(a.ndim) if i != filters_axis)
  return np.sqrt(np.sum(a ** 2, axis=others))


# (path, axis indexing the filters) written out by hand.
FILTERS = [(("dense", "kernel"), 1), (("embed", "embedding"), 0), (("conv", "kernel"), 3)]


def test_every_filter_has_the_weight_filters_norm():
  d = sf.filter_normalized_direction(0, PARAMS)
  assert jax.tree.structure(d) == jax.tree.structure(PARAMS)
  for path, axis in FILTERS:
    got, want = filter_norms(get(d, path), axis), filter_norms(get(PARAMS, path), axis)
    assert got.shape == (get(PARAMS, path).shape[axis],)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert get(d, path).dtype == np.float64 and d[path[0]][path[1]].dtype == jnp.float32
    # Random, not a rescaled copy of the weights.
    assert not np.allclose(get(d, path) / get(PARAMS, path), 1.0)
  for path in ONE_D:
    np.testing.assert_array_equal(get(d, path), 0.0)
  assert float(d["temperature"]) == 0.0


def test_one_d_copy_and_custom_filter_axis():
  d = sf.filter_normalized_direction(0, PARAMS, one_d="copy")
  for path in ONE_D:
    np.testing.assert_array_equal(get(d, path), get(PARAMS, path))
  # Filters along the first axis everywhere (PyTorch's [out, in] convention).
  rows = sf.filter_normalized_direction(
      0, PARAMS, filter_axis=lambda path, leaf: 0 if np.ndim(leaf) >= 2 else None)
  for path, _ in FILTERS:
    np.testing.assert_allclose(filter_norms(get(rows, path), 0),
                               filter_norms(get(PARAMS, path), 0), rtol=1e-5)


def test_default_filter_axis():
  assert sf.default_filter_axis("bert/encoder/layer/0/attention/self/query/kernel",
                                np.zeros((384, 384))) == 1
  assert sf.default_filter_axis("bert/embeddings/word_embeddings/embedding",
                                np.zeros((30522, 384))) == 0
  assert sf.default_filter_axis("conv/kernel", np.zeros((3, 3, 2, 6))) == 3
  assert sf.default_filter_axis("x/bias", np.zeros(7)) is None
  assert sf.default_filter_axis("x/embedding", np.zeros(7)) is None
  assert sf.default_filter_axis("t", np.float32(1)) is None


def test_directions_are_seeded():
  a = sf.filter_normalized_direction(3, PARAMS)
  b = sf.filter_normalized_direction(jax.random.key(3), PARAMS)
  c = sf.filter_normalized_direction(4, PARAMS)
  for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c)):
    np.testing.assert_array_equal(x, y)
    if np.ndim(x) >= 2:
      assert not np.allclose(x, z)


# ---- surfaces of a quadratic ----------------------------------------------------

def flat(tree):
  return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


NUM = flat(PARAMS).size
Q, _ = np.linalg.qr(RNG.normal(size=(NUM, NUM)))
H = (Q * RNG.uniform(0.0, 2.0, NUM)) @ Q.T
CVEC = RNG.normal(size=NUM)
CONST = 1.5


def quad(p):
  w = jnp.concatenate([x.reshape(-1) for x in jax.tree.leaves(p)])
  return 0.5 * w @ jnp.asarray(H, jnp.float32) @ w + jnp.asarray(CVEC, jnp.float32) @ w + CONST


def quad64(w):
  return 0.5 * w @ H @ w + CVEC @ w + CONST


def test_1d_surface_matches_closed_form():
  d = sf.filter_normalized_direction(1, PARAMS)
  alphas = sf.grid(-1.0, 1.0, 9)
  s = sf.loss_surface_1d(quad, PARAMS, d, alphas)
  t, u = flat(PARAMS), flat(d)
  g = H @ t + CVEC
  want = quad64(t) + alphas * (g @ u) + 0.5 * alphas ** 2 * (u @ H @ u)
  np.testing.assert_array_equal(s.alphas, alphas)
  np.testing.assert_allclose(s.losses, want, rtol=1e-5)
  assert s.losses[4] == pytest.approx(quad64(t), rel=1e-6)    # a = 0: the params themselves


def test_2d_surface_matches_closed_form():
  d1 = sf.filter_normalized_direction(1, PARAMS)
  d2 = sf.filter_normalized_direction(2, PARAMS, one_d="copy")
  alphas, betas = sf.grid(-1.0, 1.0, 5), np.array([-0.5, 0.0, 0.25, 1.0])
  seen = []
  s = sf.loss_surface_2d(quad, PARAMS, (d1, d2), alphas, betas,
                         callback=lambda k, v: seen.append(k))
  assert s.losses.shape == (5, 4) and seen == list(range(20))
  t, u, v = flat(PARAMS), flat(d1), flat(d2)
  a, b = np.meshgrid(alphas, betas, indexing="ij")
  g = H @ t + CVEC
  want = (quad64(t) + a * (g @ u) + b * (g @ v)
          + 0.5 * (a ** 2 * (u @ H @ u) + 2 * a * b * (u @ H @ v) + b ** 2 * (v @ H @ v)))
  np.testing.assert_allclose(s.losses, want, rtol=1e-5)


def test_surface_of_a_batch_mean_loss():
  """A BatchMeanLoss is evaluated batch by batch and gives the same surface."""
  targets = [jax.tree.map(lambda x: x + 0.1 * i, PARAMS) for i in range(3)]

  def per_batch(p, target):
    return sum(jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(target)))

  def whole(p):
    return sum(per_batch(p, t) for t in targets) / 3
  d = sf.filter_normalized_direction(0, PARAMS)
  alphas = sf.grid(-0.5, 0.5, 5)
  a = sf.loss_surface_1d(hs.batch_loss_mean(per_batch, targets), PARAMS, d, alphas)
  b = sf.loss_surface_1d(whole, PARAMS, d, alphas)
  np.testing.assert_allclose(a.losses, b.losses, rtol=1e-6)


# ---- plots ----------------------------------------------------------------------

def is_png(path):
  data = path.read_bytes()
  return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
  alphas = sf.grid(-1, 1, 11)
  s1 = sf.Surface1D(alphas, 1 + alphas ** 2)
  s2 = sf.Surface1D(alphas, 1 + 3 * alphas ** 2)
  out = sf.plot_surface_1d(s1, tmp_path / "one.png", title="one")
  assert out == tmp_path / "one.png" and is_png(out)
  assert is_png(sf.plot_surface_1d({"Adam": s2, "SAM": s1}, tmp_path / "sub" / "two.png",
                                   log=True))
  a, b = np.meshgrid(alphas, sf.grid(-1, 1, 7), indexing="ij")
  s = sf.Surface2D(alphas, sf.grid(-1, 1, 7), 1 + a ** 2 + 2 * b ** 2 + 0.5 * a * b)
  assert is_png(sf.plot_surface_2d(s, tmp_path / "contour.png", title="quadratic"))


# ---- bad input ------------------------------------------------------------------

@pytest.mark.parametrize("alphas", [[], [[0.0, 1.0]], [0.0, float("nan")], [1.0, 0.0],
                                    [0.0, 0.0, 1.0], ["a", "b"], None])
def test_bad_grids_raise(alphas):
  d = sf.filter_normalized_direction(0, PARAMS)
  with pytest.raises(FlatjaxInputError):
    sf.loss_surface_1d(quad, PARAMS, d, alphas)
  with pytest.raises(FlatjaxInputError):
    sf.loss_surface_2d(quad, PARAMS, (d, d), [0.0, 1.0], alphas)


def test_bad_arguments_raise(tmp_path):
  for args in ((0.0, 1.0, 1), (1.0, 0.0, 5), (0.0, float("inf"), 5), (0.0, 1.0, 2.5)):
    with pytest.raises(FlatjaxInputError):
      sf.grid(*args)
  d = sf.filter_normalized_direction(0, PARAMS)
  with pytest.raises(FlatjaxInputError):
    sf.filter_normalized_direction(0, PARAMS, one_d="ones")
  with pytest.raises(FlatjaxInputError):
    sf.filter_normalized_direction(0, PARAMS, filter_axis=lambda path, leaf: 5)
  with pytest.raises(FlatjaxInputError):
    sf.loss_surface_1d(quad, PARAMS, {"dense": d["dense"]}, [0.0])
  with pytest.raises(FlatjaxInputError):
    sf.loss_surface_2d(quad, PARAMS, (d, d, d), [0.0], [0.0])
  with pytest.raises(FlatjaxInputError):
    sf.plot_surface_2d(sf.Surface2D(np.array([0.0]), np.array([0.0, 1.0]), np.zeros((1, 2))),
                       tmp_path / "x.png")
  with pytest.raises(FlatjaxInputError):
    sf.plot_surface_1d({}, tmp_path / "x.png")
