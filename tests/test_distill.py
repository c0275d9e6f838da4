"""CoFi's distillation losses (flatjax.train.distill) against PyTorch and numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flatjax.errors import FlatjaxInputError
from flatjax.train import distill
from flatjax.train.distill import (DistillConfig, align_layers, distillation_loss,
                                   layer_distillation_loss, layer_loss_matrix, prediction_kl,
                                   prediction_loss, teacher_layers, token_weights)


def _torch_kl(student, teacher, temperature):
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  s = torch.tensor(np.asarray(student, np.float64))
  t = torch.tensor(np.asarray(teacher, np.float64))
  return float(F.kl_div(F.log_softmax(s / temperature, dim=-1),
                        F.softmax(t / temperature, dim=-1),
                        reduction="batchmean") * temperature ** 2)


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_kl_rows(student, teacher, temperature):
  log_p = _np_log_softmax(np.asarray(teacher, np.float64) / temperature)
  log_q = _np_log_softmax(np.asarray(student, np.float64) / temperature)
  return (np.exp(log_p) * (log_p - log_q)).sum(-1) * temperature ** 2


# --- prediction-layer distillation ---

@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 5.0])
def test_prediction_kl_matches_torch_kl_div_batchmean(temperature):
  rng = np.random.default_rng(0)
  s = rng.normal(size=(8, 3)).astype(np.float32) * 3
  t = rng.normal(size=(8, 3)).astype(np.float32) * 3
  got = float(prediction_kl(jnp.asarray(s), jnp.asarray(t), temperature))
  np.testing.assert_allclose(got, _torch_kl(s, t, temperature), rtol=1e-5, atol=1e-6)


def test_prediction_kl_default_temperature_is_two_and_zero_for_equal_logits():
  rng = np.random.default_rng(1)
  s = rng.normal(size=(4, 5)).astype(np.float32)
  t = rng.normal(size=(4, 5)).astype(np.float32)
  np.testing.assert_allclose(float(prediction_kl(s, t)), _torch_kl(s, t, 2.0), rtol=1e-5)
  assert abs(float(prediction_kl(t, t))) < 1e-6


def test_prediction_kl_weighted_is_unweighted_on_real_rows():
  rng = np.random.default_rng(2)
  s = rng.normal(size=(6, 3)).astype(np.float32)
  t = rng.normal(size=(6, 3)).astype(np.float32)
  weight = np.array([1, 1, 1, 1, 0, 0], np.float32)
  s_padded, t_padded = s.copy(), t.copy()
  s_padded[4:] = 50.0 * rng.normal(size=(2, 3))  # padding rows: arbitrary
  t_padded[4:] = -30.0
  got = float(prediction_kl(s_padded, t_padded, 2.0, weight))
  np.testing.assert_allclose(got, float(prediction_kl(s[:4], t[:4], 2.0)), rtol=1e-6)
  np.testing.assert_allclose(got, _torch_kl(s[:4], t[:4], 2.0), rtol=1e-5)


def test_prediction_kl_teacher_gets_no_gradient():
  rng = np.random.default_rng(3)
  s = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  t = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
  g_s, g_t = jax.grad(prediction_kl, argnums=(0, 1))(s, t)
  assert np.abs(np.asarray(g_s)).sum() > 0
  np.testing.assert_array_equal(np.asarray(g_t), 0.0)


def test_prediction_loss_classification_regression_span():
  rng = np.random.default_rng(4)
  weight = np.array([1, 1, 0], np.float32)
  # classification: the weighted KL
  s, t = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
  got = float(prediction_loss("classification", {"logits": s}, {"logits": t}, 2.0, weight))
  np.testing.assert_allclose(got, _np_kl_rows(s, t, 2.0)[:2].mean(), rtol=1e-5)
  # regression: MSE of the single outputs over real rows, no temperature
  s, t = rng.normal(size=(3, 1)), rng.normal(size=(3, 1))
  got = float(prediction_loss("regression", {"logits": s}, {"logits": t}, 2.0, weight))
  np.testing.assert_allclose(got, ((s[:2, 0] - t[:2, 0]) ** 2).mean(), rtol=1e-5)
  got = float(prediction_loss("regression", {"logits": s}, {"logits": t}, 2.0, None))
  np.testing.assert_allclose(got, ((s[:, 0] - t[:, 0]) ** 2).mean(), rtol=1e-5)
  # span: the mean of start and end KLs over positions
  s_out = {"start_logits": rng.normal(size=(3, 7)), "end_logits": rng.normal(size=(3, 7))}
  t_out = {"start_logits": rng.normal(size=(3, 7)), "end_logits": rng.normal(size=(3, 7))}
  got = float(prediction_loss("span", s_out, t_out, 3.0, weight))
  want = (_np_kl_rows(s_out["start_logits"], t_out["start_logits"], 3.0)[:2].mean()
          + _np_kl_rows(s_out["end_logits"], t_out["end_logits"], 3.0)[:2].mean()) / 2
  np.testing.assert_allclose(got, want, rtol=1e-5)
  with pytest.raises(FlatjaxInputError):
    prediction_loss("tagging", {"logits": s}, {"logits": t}, 2.0, None)
  with pytest.raises(FlatjaxInputError):
    prediction_kl(s, t, temperature=0.0)


# --- layer distillation: the loss matrix ---

def _np_layer_matrix(student, teacher, w):
  out = np.zeros((teacher.shape[0], student.shape[0]))
  d = student.shape[-1]
  for i in range(teacher.shape[0]):
    for j in range(student.shape[0]):
      sq = ((teacher[i].astype(np.float64) - student[j]) ** 2).sum(-1)  # [B, L]
      out[i, j] = (sq * w).sum() / (w.sum() * d)
  return out


def test_layer_loss_matrix_matches_numpy_double_loop():
  rng = np.random.default_rng(5)
  student = rng.normal(size=(6, 3, 5, 8)).astype(np.float32)
  teacher = rng.normal(size=(4, 3, 5, 8)).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], np.float32)
  example_weight = np.array([1, 1, 0], np.float32)
  w = mask * example_weight[:, None]
  got = np.asarray(layer_loss_matrix(jnp.asarray(student), jnp.asarray(teacher),
                                     token_weights(mask, example_weight)))
  assert got.shape == (4, 6) and got.dtype == np.float32
  np.testing.assert_allclose(got, _np_layer_matrix(student, teacher, w), rtol=1e-5)
  # all weights 1: plain MSE over every position, as CoFi's nn.MSELoss
  full = np.asarray(layer_loss_matrix(student, teacher, np.ones((3, 5), np.float32)))
  np.testing.assert_allclose(full[2, 4], ((teacher[2] - student[4]) ** 2).mean(), rtol=1e-5)


def test_layer_loss_matrix_ignores_padding_positions():
  rng = np.random.default_rng(6)
  student = rng.normal(size=(3, 2, 6, 4)).astype(np.float32)
  teacher = rng.normal(size=(2, 2, 6, 4)).astype(np.float32)
  w = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.float32)
  w = w * np.array([1, 0], np.float32)[:, None]  # row 1 is a padding row
  base = np.asarray(layer_loss_matrix(student, teacher, w))
  s2, t2 = student.copy(), teacher.copy()
  s2[:, 0, 4:] = 100.0 * rng.normal(size=(3, 2, 4))  # padding tokens of row 0
  t2[:, 0, 4:] = -7.0
  s2[:, 1] = rng.normal(size=(3, 6, 4)) * 20.0  # the padding row
  t2[:, 1] = 3.0
  np.testing.assert_allclose(np.asarray(layer_loss_matrix(s2, t2, w)), base, rtol=1e-6)


def test_layer_loss_matrix_teacher_gets_no_gradient():
  rng = np.random.default_rng(7)
  s = jnp.asarray(rng.normal(size=(2, 1, 3, 4)), jnp.float32)
  t = jnp.asarray(rng.normal(size=(2, 1, 3, 4)), jnp.float32)
  g_s, g_t = jax.grad(lambda a, b: layer_loss_matrix(a, b, jnp.ones((1, 3))).sum(),
                      argnums=(0, 1))(s, t)
  assert np.abs(np.asarray(g_s)).sum() > 0
  np.testing.assert_array_equal(np.asarray(g_t), 0.0)


# --- layer distillation: dynamic matching ---

def _align(matrix, existing=None, jit=False):
  fn = jax.jit(align_layers) if jit else align_layers
  m = jnp.asarray(matrix, jnp.float32)
  out = fn(m) if existing is None else fn(m, jnp.asarray(existing))
  assert out.dtype == jnp.int32
  return np.asarray(out).tolist()


# 3 teacher layers x 5 student layers. Unconstrained argmin per row: [3, 1, 4];
# teacher layer 0 -> student 3 would come after teacher layer 1's student 1.
ORDER_CASE = np.array([[5.0, 4.0, 3.0, 0.5, 6.0],
                       [9.0, 0.2, 8.0, 8.0, 8.0],
                       [9.0, 9.0, 9.0, 9.0, 0.1]])


@pytest.mark.parametrize("jit", [False, True])
def test_align_layers_order_constraint_picks_an_earlier_layer(jit):
  assert np.argmin(ORDER_CASE, axis=1).tolist() == [3, 1, 4]
  # last row: 4; row 1: best among j < 4 is 1; row 0: only j = 0 is left (< 1).
  assert _align(ORDER_CASE, jit=jit) == [0, 1, 4]


@pytest.mark.parametrize("jit", [False, True])
def test_align_layers_existing_mask_excludes_the_best_layer(jit):
  m = np.array([[0.1, 0.5, 0.3, 9.0, 9.0],
                [9.0, 9.0, 0.2, 0.4, 9.0],
                [9.0, 0.8, 9.0, 0.7, 0.1]])
  assert _align(m, jit=jit) == [0, 2, 4]
  existing = np.array([False, True, True, True, False])
  # row 2: 4 is pruned -> 3; row 1: among j < 3 existing {1, 2} -> 2; row 0: {1} -> 1.
  assert _align(m, existing, jit=jit) == [1, 2, 3]
  # a numeric mask (CoFi's head_layer_z) works too: nonzero = exists
  assert _align(m, existing.astype(np.float32) * 0.3, jit=jit) == [1, 2, 3]


@pytest.mark.parametrize("jit", [False, True])
def test_align_layers_no_candidate_reuses_the_previous_pick(jit):
  # 4 teacher layers onto 3 student layers: the picks run out at row 0.
  m = np.array([[0.1, 0.2, 0.3],
                [0.2, 0.1, 0.3],
                [0.3, 0.1, 0.2],
                [0.3, 0.2, 0.1]])
  assert _align(m, jit=jit) == [0, 0, 1, 2]
  # only layer 1 exists: row 3 -> 1, then nothing below 1 exists: reuse 1.
  assert _align(m, [False, True, False], jit=jit) == [1, 1, 1, 1]
  # no layer exists: the last student layer throughout.
  assert _align(m, [False, False, False], jit=jit) == [2, 2, 2, 2]


def test_align_layers_jit_equals_eager_on_random_matrices():
  rng = np.random.default_rng(8)
  jitted = jax.jit(align_layers)
  for _ in range(5):
    m = jnp.asarray(rng.uniform(size=(4, 12)), jnp.float32)
    existing = jnp.asarray(rng.uniform(size=12) < 0.6)
    for e in (None, existing):
      eager = np.asarray(align_layers(m, e))
      assert np.asarray(jitted(m, e)).tolist() == eager.tolist()
      # a plain-Python reference of the rule
      ex = np.ones(12, bool) if e is None else np.asarray(e)
      bound, prev, want = 12, 11, []
      for i in range(3, -1, -1):
        cand = [j for j in range(12) if j < bound and ex[j]]
        pick = min(cand, key=lambda j: (float(m[i, j]), j)) if cand else prev
        want.append(pick)
        bound = prev = pick
      assert eager.tolist() == want[::-1]


def test_layer_distillation_loss_gradient_only_at_the_alignment():
  m = jnp.asarray(ORDER_CASE, jnp.float32)
  loss, alignment = layer_distillation_loss(m)
  assert np.asarray(alignment).tolist() == [0, 1, 4]
  np.testing.assert_allclose(float(loss), 5.0 + 0.2 + 0.1, rtol=1e-6)
  grad = np.asarray(jax.jit(jax.grad(lambda x: layer_distillation_loss(x)[0]))(m))
  want = np.zeros_like(ORDER_CASE)
  want[[0, 1, 2], [0, 1, 4]] = 1.0
  np.testing.assert_array_equal(grad, want)


# --- teacher layers and config ---

def test_teacher_layers():
  assert teacher_layers(12) == [2, 5, 8, 11]
  assert teacher_layers(6) == [1, 2, 4, 5]
  assert teacher_layers(4, 4) == [0, 1, 2, 3]
  assert teacher_layers(12, 1) == [11]
  for bad in ((3, 4), (12, 0), (0, 0), (12.0, 4)):
    with pytest.raises(FlatjaxInputError):
      teacher_layers(*bad)


def test_distill_config_for_task_and_bad_values():
  assert DistillConfig() == DistillConfig(2.0, 0.9, 0.1, 4)
  for name, (lw, pw) in {"sst2": (0.9, 0.1), "SST-2": (0.9, 0.1), "qnli": (0.9, 0.1),
                         "qqp": (0.7, 0.3), "MNLI": (0.7, 0.3), "rte": (0.9, 0.1),
                         "stsb": (0.9, 0.1), "squad": (0.9, 0.1)}.items():
    config = DistillConfig.for_task(name)
    assert (config.layer_weight, config.prediction_weight) == (lw, pw), name
    assert config.temperature == 2.0 and config.num_teacher_layers == 4
  with pytest.raises(FlatjaxInputError):
    DistillConfig.for_task("imagenet")
  for bad in (dict(temperature=0.0), dict(temperature=-1.0), dict(temperature=float("nan")),
              dict(layer_weight=-0.1), dict(prediction_weight=-1.0),
              dict(layer_weight=float("inf")), dict(num_teacher_layers=0)):
    with pytest.raises(FlatjaxInputError):
      DistillConfig(**bad)


def test_distillation_loss_combines_both_terms_under_jit():
  rng = np.random.default_rng(9)
  config = DistillConfig.for_task("mnli")
  student_states = jnp.asarray(rng.normal(size=(6, 2, 5, 8)), jnp.float32)
  teacher_all = rng.normal(size=(6, 2, 5, 8)).astype(np.float32)
  teacher_states = jnp.asarray(teacher_all[teacher_layers(6)])
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.float32)
  example_weight = np.array([1, 1], np.float32)
  s_out = {"logits": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)}
  t_out = {"logits": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)}
  existing = jnp.asarray([True, True, False, True, True, True])

  def run(ss, ts, tw, ew, ex):
    return distillation_loss(config, "classification", s_out, t_out, ss, ts, tw, ew, ex)

  tw = token_weights(mask, example_weight)
  loss, aux = jax.jit(run)(student_states, teacher_states, tw, example_weight, existing)
  matrix = layer_loss_matrix(student_states, teacher_states, tw)
  want_layer, want_alignment = layer_distillation_loss(matrix, existing)
  want_pred = prediction_kl(s_out["logits"], t_out["logits"], 2.0)
  np.testing.assert_allclose(float(aux["layer_loss"]), float(want_layer), rtol=1e-5)
  np.testing.assert_allclose(float(aux["prediction_loss"]), float(want_pred), rtol=1e-5)
  assert np.asarray(aux["alignment"]).tolist() == np.asarray(want_alignment).tolist()
  assert 2 not in np.asarray(aux["alignment"]).tolist()
  np.testing.assert_allclose(float(loss), 0.7 * float(want_layer) + 0.3 * float(want_pred),
                             rtol=1e-5)
  with pytest.raises(FlatjaxInputError):  # 4 teacher layers expected
    distillation_loss(config, "classification", s_out, t_out, student_states,
                      teacher_states[:3], tw, example_weight)
  assert distill.TASK_KINDS == ("classification", "regression", "span")


def test_micro_batch_shares_under_whole_batch_totals_and_alignment_sum_to_the_whole():
  """Two micro-batches whose own loss matrices pick different student layers than the
  whole batch's (built by hand: micro-batch A's layer 0 equals the teacher, B's layer 1
  does): each one's loss under the whole batch's totals and matrix is its share, and the
  shares' values and gradients add up to the whole batch's; under its own alignment A's
  share does not."""
  config = DistillConfig(num_teacher_layers=1)
  teacher = np.zeros((1, 4, 3, 2), np.float32)
  student = np.zeros((2, 4, 3, 2), np.float32)
  student[1, :2] = 1.0      # A (rows 0, 1): layer 0 exact, layer 1 off by 1
  student[0, 2:] = 3.0      # B (rows 2, 3): layer 0 off by 3, layer 1 exact
  mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], np.float32)
  weight = np.array([1, 1, 1, 0], np.float32)  # row 3 is padding
  rng = np.random.default_rng(4)
  s_logits = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
  t_out = {"logits": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)}

  def loss(s_logits, states, rows, **whole):
    return distillation_loss(config, "classification", {"logits": s_logits[rows]},
                             {"logits": t_out["logits"][rows]}, states[:, rows],
                             jnp.asarray(teacher)[:, rows], token_weights(mask[rows], weight[rows]),
                             jnp.asarray(weight[rows]), **whole)

  everything = slice(0, 4)
  states = jnp.asarray(student)
  (want, want_aux), want_grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
      s_logits, states, everything)
  # By hand: 6 real tokens of 3 real rows, d = 2. M[0, 0] = B's 1 real token x 2 x 9 / 12,
  # M[0, 1] = A's 5 tokens x 2 x 1 / 12: the whole batch aligns layer 1.
  np.testing.assert_allclose(np.asarray(want_aux["loss_matrix"]), [[18 / 12, 10 / 12]],
                             rtol=1e-6)
  assert np.asarray(want_aux["alignment"]).tolist() == [1]
  totals = distill.batch_totals(mask, weight)
  assert float(totals.tokens) == 6 and float(totals.rows) == 3
  halves = (slice(0, 2), slice(2, 4))
  matrix = sum(loss(s_logits, states, rows, totals=totals)[1]["loss_matrix"] for rows in halves)
  np.testing.assert_allclose(np.asarray(matrix), np.asarray(want_aux["loss_matrix"]), rtol=1e-6)
  value, grads = 0.0, None
  for rows in halves:
    (v, aux), g = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
        s_logits, states, rows, totals=totals, alignment_matrix=matrix)
    assert np.asarray(aux["alignment"]).tolist() == [1]
    value = value + v
    grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
  np.testing.assert_allclose(float(value), float(want), rtol=1e-6)
  for got, expected in zip(grads, want_grads):
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6, atol=1e-7)
  own = loss(s_logits, states, halves[0], totals=totals)[1]
  assert np.asarray(own["alignment"]).tolist() == [0]  # A alone would align layer 0
