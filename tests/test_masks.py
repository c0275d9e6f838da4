"""Pruning masks against independent references.

Every expected mask is computed here with numpy (a stable sort of -|w| then
flattened position over the leaves concatenated in path order) or written by
hand from the BERT architecture; nothing is compared with flatjax's own output.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flatjax.data.tasks import get_task
from flatjax.errors import FlatjaxInputError
from flatjax.models import BertConfig, build_module, init_params
from flatjax.sparsity import masks

SPARSITIES = (0.0, 0.05, 0.3, 0.6, 0.77, 0.99, 1.0)


# ---- numpy reference -------------------------------------------------------

def np_leaves(tree, prefix=""):
  """``[(path, array or None)]`` in path order: dict keys sorted at every
  level, as the masks are documented to order leaves."""
  if isinstance(tree, dict):
    out = []
    for k in sorted(tree):
      out += np_leaves(tree[k], f"{prefix}/{k}" if prefix else str(k))
    return out
  return [(prefix, None if tree is None else np.asarray(tree))]


def ref_top_k(arrays, k, eligible=None):
  """Keep the k largest of the concatenated arrays; ties to the earlier flat
  position; only eligible entries can be kept. Returns bool arrays."""
  flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
  ok = (np.ones(flat.size, bool) if eligible is None else
        np.concatenate([np.asarray(e, bool).ravel() for e in eligible]))
  idx = np.arange(flat.size)
  order = np.lexsort((idx, -flat))      # primary -|w|, then position (stable)
  order = order[ok[order]]
  keep = np.zeros(flat.size, bool)
  keep[order[:k]] = True
  out, start = [], 0
  for a in arrays:
    n = np.size(a)
    out.append(keep[start:start + n].reshape(np.shape(a)))
    start += n
  return out


def n_keep(n, s):
  return n - round(s * n)


def mask_arrays(mask):
  """The mask's leaves in path order, None kept, as numpy bools."""
  return [(p, None if m is None else np.asarray(m)) for p, m in np_leaves(mask)]


def assert_mask_equal(mask, expected):
  """``expected``: [(path, bool array or None)] in path order."""
  got = mask_arrays(mask)
  assert [p for p, _ in got] == [p for p, _ in expected]
  for (p, g), (_, e) in zip(got, expected):
    if e is None:
      assert g is None, p
    else:
      assert g is not None and g.dtype == bool, p
      np.testing.assert_array_equal(g, e, err_msg=p)


# ---- trees -----------------------------------------------------------------

SCOPE = (r"kernel$",)


def toy_params(seed=0, ties=False):
  """Kernels (in scope) and biases (out of scope), 120 kernel weights."""
  rng = np.random.default_rng(seed)

  def draw(*shape):
    if ties:  # few distinct magnitudes, both signs: many exact ties
      return rng.integers(-3, 4, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)
  return {"b": {"kernel": jnp.asarray(draw(4, 5)), "bias": jnp.asarray(draw(5))},
          "a": {"kernel": jnp.asarray(draw(3, 6, 2)), "bias": jnp.asarray(draw(2))},
          "c": {"x": {"kernel": jnp.asarray(draw(8, 8))}, "bias": jnp.asarray(draw(8))}}


def scoped(params):
  """[(path, |w| or None)] in path order for the toy scope."""
  return [(p, np.abs(a) if p.endswith("kernel") else None) for p, a in np_leaves(params)]


TINY = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=16, max_position_embeddings=16)


def tiny_bert_params(task="rte", config=TINY, seed=0):
  return init_params(build_module(config, get_task(task)), seed=seed)


# ---- magnitude pruning -----------------------------------------------------

@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("s", SPARSITIES)
def test_global_magnitude_keeps_k_largest(s, ties):
  params = toy_params(seed=1, ties=ties)
  ref = scoped(params)
  arrays = [a for _, a in ref if a is not None]
  n = sum(a.size for a in arrays)
  assert n == 120
  kept = iter(ref_top_k(arrays, n_keep(n, s)))
  expected = [(p, None if a is None else next(kept)) for p, a in ref]
  mask = masks.magnitude_mask(params, s, scope=SCOPE)
  assert_mask_equal(mask, expected)
  assert sum(int(np.sum(m)) for _, m in mask_arrays(mask) if m is not None) == n_keep(n, s)


def test_global_ties_go_to_earlier_leaf_and_position():
  # All |w| equal: keeping 7 of 2 x 6 must keep a's 6 then b's first one.
  params = {"b": {"kernel": jnp.full((2, 3), -2.0)}, "a": {"kernel": jnp.full((3, 2), 2.0)}}
  mask = masks.magnitude_mask(params, 5 / 12, scope=SCOPE)
  np.testing.assert_array_equal(np.asarray(mask["a"]["kernel"]), np.ones((3, 2), bool))
  np.testing.assert_array_equal(np.asarray(mask["b"]["kernel"]),
                                [[True, False, False], [False, False, False]])


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("s", SPARSITIES)
def test_per_tensor_magnitude_keeps_k_largest_per_leaf(s, ties):
  params = toy_params(seed=2, ties=ties)
  expected = [(p, None if a is None else ref_top_k([a], n_keep(a.size, s))[0])
              for p, a in scoped(params)]
  mask = masks.magnitude_mask(params, s, scope=SCOPE, granularity="per_tensor")
  assert_mask_equal(mask, expected)


@pytest.mark.parametrize("k", [0, 1, 9, 25, 39, 40])
def test_top_k_mask_signed_scores(k):
  # Signed scores (not magnitudes): negatives, infinities, ties across leaves.
  rng = np.random.default_rng(12)
  a = rng.integers(-3, 4, (4, 5)).astype(np.float32)
  b = np.concatenate([rng.integers(-3, 4, 16), [-np.inf, np.inf, -1e30, 1e-30]]
                     ).astype(np.float32)
  scores = {"b": jnp.asarray(b), "a": jnp.asarray(a), "c": None}
  ea, eb = ref_top_k([a, b], k)
  assert_mask_equal(masks.top_k_mask(scores, k), [("a", ea), ("b", eb), ("c", None)])


def test_magnitude_bad_arguments():
  params = toy_params()
  for s in (-0.1, 1.5, float("nan")):
    with pytest.raises(FlatjaxInputError):
      masks.magnitude_mask(params, s, scope=SCOPE)
  with pytest.raises(FlatjaxInputError):
    masks.magnitude_mask(params, 0.5, scope=SCOPE, granularity="per_layer")


def _random_bool_mask(params, frac, seed):
  """A hand-made mask on the toy scope, uncorrelated with |w|."""
  rng = np.random.default_rng(seed)
  return {k: ({kk: (jnp.asarray(rng.random(np.shape(v)) >= frac) if kk == "kernel" else None)
               for kk, v in sub.items()} if k != "c" else
              {"x": {"kernel": jnp.asarray(rng.random((8, 8)) >= frac)}, "bias": None})
          for k, sub in params.items()}


@pytest.mark.parametrize("granularity", ["global", "per_tensor"])
def test_previous_mask_only_removes_and_counts_whole_scope(granularity):
  params = toy_params(seed=3)
  # A previous mask uncorrelated with |w|, so keeping the largest |w| alone
  # would not give a subset of it.
  prev = _random_bool_mask(params, 0.25, seed=4)
  prev_arrays = [m for _, m in mask_arrays(prev) if m is not None]
  abs_arrays = [a for _, a in scoped(params) if a is not None]
  n = sum(a.size for a in abs_arrays)
  s = 0.4
  assert all(m.sum() >= n_keep(m.size, s) for m in prev_arrays)  # 0.4 prunes more, per leaf too
  if granularity == "global":
    exp = ref_top_k(abs_arrays, n_keep(n, s), prev_arrays)
  else:
    exp = [ref_top_k([a], n_keep(a.size, s), [m])[0] for a, m in zip(abs_arrays, prev_arrays)]
  mask = masks.magnitude_mask(params, s, granularity=granularity, previous=prev)
  got = [m for _, m in mask_arrays(mask) if m is not None]
  for g, e, pm in zip(got, exp, prev_arrays):
    np.testing.assert_array_equal(g, e)
    assert not np.any(g & ~pm)                        # a subset of previous
  assert sum(int(g.sum()) for g in got) == (
      n_keep(n, s) if granularity == "global" else sum(n_keep(a.size, s) for a in abs_arrays))
  # Out-of-scope leaves stay None.
  assert mask["a"]["bias"] is None and mask["c"]["bias"] is None


def test_previous_then_more_sparsity_is_exact_fraction_of_original():
  params = toy_params(seed=5)
  n = 120
  m1 = masks.magnitude_mask(params, 0.1, scope=SCOPE)
  m2 = masks.magnitude_mask(params, 0.2, previous=m1)
  z1 = sum(int((~m).sum()) for _, m in mask_arrays(m1) if m is not None)
  z2 = sum(int((~m).sum()) for _, m in mask_arrays(m2) if m is not None)
  assert (z1, z2) == (12, 24)
  assert masks.sparsity(m2) == pytest.approx(0.2)
  # Same sparsity again: nothing more to remove, the same mask.
  m2b = masks.magnitude_mask(params, 0.2, previous=m2)
  assert_mask_equal(m2b, mask_arrays(m2))


@pytest.mark.parametrize("granularity", ["global", "per_tensor"])
def test_previous_asking_for_less_sparsity_raises(granularity):
  params = toy_params(seed=6)
  m = masks.magnitude_mask(params, 0.3, scope=SCOPE, granularity=granularity)
  with pytest.raises(FlatjaxInputError):
    masks.magnitude_mask(params, 0.2, granularity=granularity, previous=m)
  with pytest.raises(FlatjaxInputError):
    masks.magnitude_mask(params, 0.0, granularity=granularity, previous=m)


@pytest.mark.parametrize("granularity", ["global", "per_tensor"])
def test_imp_schedule_exact_sparsities(granularity):
  rng = np.random.default_rng(7)
  # Every leaf a multiple of 10, so s * n is an integer globally and per tensor.
  params = {"l0": {"kernel": jnp.asarray(rng.standard_normal((10, 4)), jnp.float32)},
            "l1": {"kernel": jnp.asarray(rng.standard_normal((6, 10)), jnp.float32),
                   "bias": jnp.asarray(rng.standard_normal(10), jnp.float32)}}
  sizes = {"l0/kernel": 40, "l1/kernel": 60}
  # Fine-tuning changes weights between rounds: perturb them each round.
  mask = None
  for i in range(1, 10):
    s = i / 10
    params = jax.tree.map(lambda w: w + 0.3 * jnp.asarray(rng.standard_normal(w.shape),
                                                          jnp.float32), params)
    new = masks.magnitude_mask(params, s, scope=SCOPE, granularity=granularity, previous=mask)
    leaves = dict((p, m) for p, m in mask_arrays(new) if m is not None)
    assert set(leaves) == set(sizes)
    zeros = {p: int((~m).sum()) for p, m in leaves.items()}
    assert sum(zeros.values()) == 10 * i
    if granularity == "per_tensor":
      assert zeros == {p: n * i // 10 for p, n in sizes.items()}
    if mask is not None:
      old = dict((p, m) for p, m in mask_arrays(mask) if m is not None)
      assert all(not np.any(leaves[p] & ~old[p]) for p in sizes)
    mask = new
  assert masks.sparsity(mask) == pytest.approx(0.9)


# ---- scope on a real BERT --------------------------------------------------

def _expected_bert_scope(num_layers, pooler):
  per_layer = ["attention/self/query/kernel", "attention/self/key/kernel",
               "attention/self/value/kernel", "attention/output/dense/kernel",
               "intermediate/dense/kernel", "output/dense/kernel"]
  paths = {f"bert/encoder/layer/{i}/{p}" for i in range(num_layers) for p in per_layer}
  if pooler:
    paths.add("bert/pooler/dense/kernel")
  return paths


@pytest.mark.parametrize("task,pooler", [("rte", True), ("squad", False)])
def test_default_scope_on_tiny_bert(task, pooler):
  # 12 layers: two-digit layer indices must match too.
  config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=12, num_attention_heads=2,
                      intermediate_size=16, max_position_embeddings=16)
  params = tiny_bert_params(task, config)
  expected = _expected_bert_scope(12, pooler)
  all_paths = [p for p, _ in np_leaves(params)]
  assert expected <= set(all_paths)
  for mask in (masks.scope_mask(params), masks.magnitude_mask(params, 0.5)):
    leaves = mask_arrays(mask)
    assert [p for p, _ in leaves] == all_paths
    selected = {p for p, m in leaves if m is not None}
    assert selected == expected
    for p in selected:
      assert not any(w in p for w in ("embeddings", "bias", "LayerNorm", "classifier",
                                      "qa_outputs"))
  assert all(m.all() for _, m in mask_arrays(masks.scope_mask(params)) if m is not None)
  # The "encoder" scope is the default without the pooler.
  enc = {p for p, m in mask_arrays(masks.scope_mask(params, "encoder")) if m is not None}
  assert enc == _expected_bert_scope(12, False)


def test_scope_matching_nothing_raises():
  params = tiny_bert_params()
  with pytest.raises(FlatjaxInputError):
    masks.scope_mask(params, r"encoder/layer/\d+/attention/self/querry/kernel$")
  with pytest.raises(FlatjaxInputError):
    masks.magnitude_mask(params, 0.5, scope=[r"^nothing$"])
  with pytest.raises(FlatjaxInputError):  # the default scope on a non-BERT tree
    masks.magnitude_mask(toy_params(), 0.5)


# ---- apply, random ---------------------------------------------------------

def test_apply_mask_zeros_exactly_the_pruned_entries():
  params = toy_params(seed=8)
  mask = _random_bool_mask(params, 0.5, seed=9)
  out = masks.apply_mask(params, mask)
  for (p, w), (_, m), (_, o) in zip(np_leaves(params), mask_arrays(mask), np_leaves(out)):
    if m is None:
      np.testing.assert_array_equal(o, w, err_msg=p)
    else:
      np.testing.assert_array_equal(o, np.where(m, w, 0.0), err_msg=p)
      assert o.dtype == w.dtype
  assert masks.apply_mask(params, None) is params


def test_random_mask_counts_reproducibility():
  params = toy_params(seed=10)
  like = masks.magnitude_mask(params, 0.7, scope=SCOPE, granularity="per_tensor")
  r1 = masks.random_mask(like, jax.random.key(0))
  r1b = masks.random_mask(like, jax.random.key(0))
  r2 = masks.random_mask(like, jax.random.key(1))
  like_l = mask_arrays(like)
  for r in (r1, r2):
    got = mask_arrays(r)
    assert [p for p, _ in got] == [p for p, _ in like_l]
    for (p, g), (_, l) in zip(got, like_l):
      if l is None:
        assert g is None
      else:
        assert g.dtype == bool and g.shape == l.shape
        assert g.sum() == l.sum(), p
  differs = lambda a, b: any(not np.array_equal(x, y) for (_, x), (_, y) in
                             zip(mask_arrays(a), mask_arrays(b)) if x is not None)
  assert differs(r1, like)
  assert not differs(r1, r1b)
  assert differs(r1, r2)


# ---- report ----------------------------------------------------------------

def test_sparsity_report_hand_counts():
  params = tiny_bert_params()
  # Sizes (hidden 8, intermediate 16): q, k, v, attention-output 64 each,
  # intermediate 8 x 16 = 128, output 16 x 8 = 128, pooler 64.
  kept = {"bert/encoder/layer/0/attention/self/query/kernel": 10,
          "bert/encoder/layer/0/attention/self/key/kernel": 20,
          "bert/encoder/layer/0/attention/self/value/kernel": 30,
          "bert/encoder/layer/0/attention/output/dense/kernel": 40,
          "bert/encoder/layer/0/intermediate/dense/kernel": 50,
          "bert/encoder/layer/0/output/dense/kernel": 60,
          "bert/encoder/layer/1/attention/self/query/kernel": 64,
          "bert/encoder/layer/1/attention/self/key/kernel": 64,
          "bert/encoder/layer/1/attention/self/value/kernel": 64,
          "bert/encoder/layer/1/attention/output/dense/kernel": 64,
          "bert/encoder/layer/1/intermediate/dense/kernel": 128,
          "bert/encoder/layer/1/output/dense/kernel": 0,
          "bert/pooler/dense/kernel": 32}
  rng = np.random.default_rng(0)

  def build(path, leaf):
    name = masks.path_str(path)
    if name not in kept:
      return None
    flat = np.zeros(np.size(leaf), bool)
    flat[rng.permutation(flat.size)[:kept[name]]] = True
    return jnp.asarray(flat.reshape(np.shape(leaf)))
  mask = jax.tree_util.tree_map_with_path(build, params)
  rep = masks.sparsity_report(mask)
  sizes = {p: (128 if ("intermediate" in p or p.endswith("output/dense/kernel") and
                       "attention" not in p) else 64) for p in kept}
  assert set(rep["tensors"]) == set(kept)
  for p, k in kept.items():
    assert rep["tensors"][p]["size"] == sizes[p], p
    assert rep["tensors"][p]["kept"] == k, p
    assert rep["tensors"][p]["sparsity"] == pytest.approx(1 - k / sizes[p]), p
  # layer 0: 512 weights, 10+20+30+40+50+60 = 210 kept; layer 1: 4*64+128+0 = 384.
  assert rep["layers"] == {
      "layer 0": {"size": 512, "kept": 210, "sparsity": pytest.approx(1 - 210 / 512)},
      "layer 1": {"size": 512, "kept": 384, "sparsity": pytest.approx(1 - 384 / 512)},
      "bert/pooler/dense": {"size": 64, "kept": 32, "sparsity": pytest.approx(0.5)}}
  assert rep["overall"] == {"size": 1088, "kept": 626,
                            "sparsity": pytest.approx(1 - 626 / 1088)}
  assert masks.sparsity(mask) == pytest.approx(1 - 626 / 1088)
  assert masks.sparsity(None) == 0.0
  text = masks.format_report(rep)
  for line in ("layer 0", "layer 1", "bert/pooler/dense", "overall"):
    assert line in text
  assert "42.46%" in text  # overall 1 - 626/1088


# ---- save / load -----------------------------------------------------------

def test_save_load_round_trip(tmp_path):
  params = tiny_bert_params()
  rng = np.random.default_rng(1)
  mask = jax.tree.map(lambda m: None if m is None else jnp.asarray(rng.random(m.shape) < 0.4),
                      masks.scope_mask(params), is_leaf=lambda x: x is None)
  written = masks.save_mask(tmp_path / "sub" / "m.safetensors", mask)
  assert written.is_file()
  assert_mask_equal(masks.load_mask(written, params), mask_arrays(mask))
  # A folder gets mask.safetensors inside it.
  folder_file = masks.save_mask(tmp_path, mask)
  assert folder_file == tmp_path / masks.MASK_FILE
  assert_mask_equal(masks.load_mask(tmp_path, params), mask_arrays(mask))
  # A folder that does not exist yet is made, not written as a file of that name.
  folder = tmp_path / "new" / "run"
  assert masks.save_mask(folder, mask) == folder / masks.MASK_FILE


def test_load_mask_errors(tmp_path):
  params = tiny_bert_params("rte")
  path = masks.save_mask(tmp_path / "m.safetensors", masks.magnitude_mask(params, 0.5))
  wider = BertConfig(vocab_size=50, hidden_size=12, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16)
  with pytest.raises(FlatjaxInputError, match="shape"):
    masks.load_mask(path, tiny_bert_params("rte", wider))
  with pytest.raises(FlatjaxInputError, match="pooler"):  # the QA model has no pooler
    masks.load_mask(path, tiny_bert_params("squad"))
  # Every tensor of a 2-layer mask fits a 3-layer model, whose third layer would stay dense.
  deeper = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                      intermediate_size=16, max_position_embeddings=16)
  with pytest.raises(FlatjaxInputError, match="made for a model with 2 encoder layers; this "
                                              "one has 3"):
    masks.load_mask(path, tiny_bert_params("rte", deeper))
  assert masks.mask_metadata(path)["encoder_layers"] == "2"
  masks.load_mask(path, tiny_bert_params("sst2"))   # another task, the same encoder
  with pytest.raises(FlatjaxInputError):
    masks.load_mask(tmp_path / "missing.safetensors", params)
  with pytest.raises(FlatjaxInputError):
    masks.load_mask(tmp_path / "no_such_folder", params)
  (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
  with pytest.raises(FlatjaxInputError):
    masks.load_mask(tmp_path / "junk.safetensors", params)


# ---- jit -------------------------------------------------------------------

def test_top_k_mask_under_jit_with_traced_k():
  params = toy_params(seed=11, ties=True)
  scores = {k: {kk: (jnp.abs(v) if kk == "kernel" else None) for kk, v in sub.items()}
            for k, sub in params.items() if k != "c"}
  scores["c"] = {"x": {"kernel": jnp.abs(params["c"]["x"]["kernel"])}, "bias": None}
  ref = [(p, a) for p, a in np_leaves(scores)]
  arrays = [a for _, a in ref if a is not None]
  traces = []

  def f(k):
    traces.append(k)
    return masks.top_k_mask(scores, k)
  jf = jax.jit(f)
  for k in (0, 1, 37, 60, 119, 120):
    kept = iter(ref_top_k(arrays, k))
    assert_mask_equal(jf(jnp.int32(k)), [(p, None if a is None else next(kept))
                                         for p, a in ref])
  assert len(traces) == 1  # one trace: k is traced, not baked in


def test_magnitude_mask_and_apply_under_jit():
  params = tiny_bert_params()
  ref = [(p, np.abs(a) if p in _expected_bert_scope(2, True) else None)
         for p, a in np_leaves(params)]
  arrays = [a for _, a in ref if a is not None]
  n = sum(a.size for a in arrays)
  kept = iter(ref_top_k(arrays, n_keep(n, 0.6)))
  expected = [(p, None if a is None else next(kept)) for p, a in ref]
  mask, pruned = jax.jit(lambda p: (lambda m: (m, masks.apply_mask(p, m)))(
      masks.magnitude_mask(p, 0.6)))(params)
  assert_mask_equal(mask, expected)
  for (p, w), (_, e), (_, o) in zip(np_leaves(params), expected, np_leaves(pruned)):
    np.testing.assert_array_equal(o, w if e is None else np.where(e, w, 0.0), err_msg=p)
  assert math.isclose(masks.sparsity(mask), round(0.6 * n) / n)


def test_signed_zeros_are_one_value_for_ties():
  got = masks.top_k_mask({"a": jnp.array([-0.0, 0.0, 1.0])}, 2)
  np.testing.assert_array_equal(np.asarray(got["a"]), [True, False, True])


def test_fully_pruned_names_the_emptied_tensors():
  params = {"big": {"kernel": jnp.full((4, 4), 2.0)}, "small": {"kernel": jnp.full((2, 2), 0.1)}}
  # 4 of 20: all of "small"; the mask functions say so themselves.
  with pytest.warns(masks.FullyPrunedWarning, match="20% prunes all of small/kernel"):
    mask = masks.magnitude_mask(params, 0.2, scope="all_kernels")
  assert masks.fully_pruned(masks.sparsity_report(mask)) == ["small/kernel"]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert masks.fully_pruned(masks.sparsity_report(masks.magnitude_mask(
        params, 0.1, scope="all_kernels"))) == []


def test_boolean_tree_scoped_mask_and_in_scope():
  params = {"a": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "b": jnp.ones(2)}
  mask = {"a": {"kernel": jnp.array([[True, False, True], [False, True, True]]), "bias": None},
          "b": None}
  full = masks.boolean_tree(mask, params)
  # What a None leaf breaks: mapping over params and mask together.
  product = jax.tree.map(lambda p, m: p * m, params, full)
  np.testing.assert_array_equal(product["a"]["kernel"], [[1, 0, 1], [0, 1, 1]])
  np.testing.assert_array_equal(product["a"]["bias"], [1, 1, 1])
  assert product["b"].tolist() == [1, 1]
  back = masks.scoped_mask(full, r"(^|/)kernel$")
  assert back["a"]["bias"] is None and back["b"] is None
  np.testing.assert_array_equal(back["a"]["kernel"], mask["a"]["kernel"])
  assert masks.in_scope(mask) == {"a": {"kernel": True, "bias": False}, "b": False}
  assert all(bool(jnp.all(m)) for m in jax.tree.leaves(masks.boolean_tree(None, params)))


def _n_m_reference(scores: np.ndarray, n: int, m: int) -> np.ndarray:
  """numpy: in every group of m consecutive rows (inputs) of each column, the n largest
  (a stable sort of the negated scores: ties keep the earlier row)."""
  keep = np.zeros(scores.shape, bool)
  for g in range(scores.shape[0] // m):
    for j in range(scores.shape[1]):
      order = np.argsort(-scores[g * m:(g + 1) * m, j], kind="stable")
      keep[g * m + order[:n], j] = True
  return keep


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_n_m_masks_keep_the_n_largest_of_every_m_inputs(n, m):
  rng = np.random.default_rng(0)
  kernel = rng.normal(size=(32, 6)).astype(np.float32)
  kernel[4:8, 0] = 0.5          # a group of ties
  kernel[9, 1] = kernel[10, 1]  # a tie inside another
  params = {"dense": {"kernel": jnp.asarray(kernel), "bias": jnp.ones(6)}}
  sparsity = 1 - n / m
  mask = masks.magnitude_mask(params, sparsity, scope=r"kernel$", granularity=f"{n}:{m}")
  got = np.asarray(mask["dense"]["kernel"])
  np.testing.assert_array_equal(got, _n_m_reference(np.abs(kernel), n, m))
  assert got.reshape(32 // m, m, 6).sum(axis=1).tolist() == [[n] * 6] * (32 // m)
  assert mask["dense"]["bias"] is None
  assert masks.sparsity(mask) == pytest.approx(sparsity)


def test_n_m_on_the_way_and_after_a_previous_mask():
  rng = np.random.default_rng(1)
  params = {"k": jnp.asarray(rng.normal(size=(16, 5)), jnp.float32)}
  first = masks.magnitude_mask(params, 0.25, scope="k", granularity="2:4")   # 3 of 4
  assert np.asarray(first["k"]).reshape(4, 4, 5).sum(axis=1).min() == 3
  second = masks.magnitude_mask(params, 0.5, granularity="2:4", previous=first)
  assert np.all(np.asarray(second["k"]) <= np.asarray(first["k"]))          # only removes
  np.testing.assert_array_equal(np.asarray(second["k"]),
                                _n_m_reference(np.abs(np.asarray(params["k"])), 2, 4))


def test_n_m_staircase_under_jit():
  # The train step's gradual pruner: keep m - round(s m) of every group, at least n.
  from flatjax.sparsity.pruner import _choose
  scores = {"k": jnp.asarray(np.random.default_rng(2).normal(size=(8, 3)), jnp.float32)}
  choose = jax.jit(lambda s: _choose(scores, s, "2:4"))
  for s, keep in ((0.1, 4), (0.3, 3), (0.5, 2), (0.9, 2)):
    kept = np.asarray(choose(jnp.float32(s))["k"]).reshape(2, 4, 3).sum(axis=1)
    assert kept.tolist() == [[keep] * 3] * 2, s


@pytest.mark.parametrize("granularity,sparsity,message", [
    ("2:4", 0.6, "one of 0.25, 0.5, got 0.6"),
    ("2:4", 0.3, "one of 0.25, 0.5, got 0.3"),
    ("4:2", 0.5, "0 < N < M"),
    ("two:four", 0.5, "global, per_tensor or N:M"),
])
def test_bad_n_m_requests_are_one_line_errors(granularity, sparsity, message):
  params = {"k": jnp.ones((8, 2))}
  with pytest.raises(FlatjaxInputError, match=message):
    masks.magnitude_mask(params, sparsity, scope="k", granularity=granularity)


def test_n_m_needs_inputs_that_split_into_groups():
  with pytest.raises(FlatjaxInputError, match=r"groups of 4, got shape \(6, 2\)"):
    masks.magnitude_mask({"k": jnp.ones((6, 2))}, 0.5, scope="k", granularity="2:4")
