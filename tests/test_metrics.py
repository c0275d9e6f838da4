"""flatjax.metrics against sklearn / scipy and hand-computed SQuAD scores."""

import collections
import re
import string

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from flatjax import metrics
from flatjax.data.tasks import get_task


# --------------------------------------------------------------------------
# Classification metrics vs sklearn.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sklearn_on_random_inputs(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(2, 300))
  labels = rng.integers(0, 2, n)
  preds = np.where(rng.random(n) < 0.7, labels, 1 - labels)
  assert metrics.accuracy(preds, labels) == pytest.approx(
      sklearn.metrics.accuracy_score(labels, preds), abs=1e-12)
  assert metrics.f1(preds, labels) == pytest.approx(
      sklearn.metrics.f1_score(labels, preds, zero_division=0), abs=1e-12)
  assert metrics.f1(preds, labels, positive=0) == pytest.approx(
      sklearn.metrics.f1_score(labels, preds, pos_label=0, zero_division=0), abs=1e-12)
  assert metrics.matthews_correlation(preds, labels) == pytest.approx(
      sklearn.metrics.matthews_corrcoef(labels, preds), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_mcc_matches_sklearn(seed):
  rng = np.random.default_rng(100 + seed)
  n, k = 500, int(rng.integers(3, 6))
  labels = rng.integers(0, k, n)
  # Predictions may use a class that never occurs in the labels.
  preds = np.where(rng.random(n) < 0.5, labels, rng.integers(0, k + 1, n))
  assert metrics.matthews_correlation(preds, labels) == pytest.approx(
      sklearn.metrics.matthews_corrcoef(labels, preds), abs=1e-12)
  assert metrics.accuracy(preds, labels) == pytest.approx(
      sklearn.metrics.accuracy_score(labels, preds), abs=1e-12)


@pytest.mark.parametrize("preds,labels", [
    ([1, 1, 1, 1], [0, 1, 0, 1]),   # constant predictions: MCC undefined -> 0
    ([0, 0, 0, 0], [0, 1, 0, 1]),   # no positive predicted
    ([0, 0, 0, 0], [0, 0, 0, 0]),   # no positives at all: F1 0/0 -> 0
    ([0, 1, 0, 1], [0, 1, 0, 1]),   # perfect: MCC 1
    ([1, 0, 1, 0], [0, 1, 0, 1]),   # inverted: MCC -1
    ([2, 2, 0, 1, 1], [2, 0, 0, 1, 2]),
])
@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn, all-zero case
def test_classification_edge_cases_match_sklearn(preds, labels):
  with np.errstate(all="ignore"):
    assert metrics.matthews_correlation(preds, labels) == pytest.approx(
        sklearn.metrics.matthews_corrcoef(labels, preds), abs=1e-12)
    assert metrics.accuracy(preds, labels) == sklearn.metrics.accuracy_score(labels, preds)
    if max(preds + labels) <= 1:
      assert metrics.f1(preds, labels) == pytest.approx(
          sklearn.metrics.f1_score(labels, preds, zero_division=0), abs=1e-12)


def test_edge_values_by_hand():
  assert metrics.matthews_correlation([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0
  assert metrics.matthews_correlation([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
  assert metrics.f1([0, 0], [0, 0]) == 0.0
  # TP=1, FP=1, FN=1 -> 2/(2+1+1)
  assert metrics.f1([1, 1, 0], [1, 0, 1]) == pytest.approx(0.5)


def test_mcc_large_counts_do_not_overflow():
  labels = np.tile([0, 1], 60_000)
  preds = labels.copy()
  preds[:1000] = 1 - preds[:1000]
  assert metrics.matthews_correlation(preds, labels) == pytest.approx(
      sklearn.metrics.matthews_corrcoef(labels, preds), abs=1e-12)


@pytest.mark.parametrize("fn", [metrics.accuracy, metrics.f1, metrics.matthews_correlation,
                                metrics.pearson, metrics.spearman])
def test_shape_errors(fn):
  with pytest.raises(ValueError):
    fn([1, 0, 1], [1, 0])
  with pytest.raises(ValueError):
    fn([], [])


# --------------------------------------------------------------------------
# Correlations vs scipy.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_on_random_inputs(seed):
  rng = np.random.default_rng(200 + seed)
  n = int(rng.integers(3, 400))
  x = rng.normal(size=n)
  y = 0.6 * x + rng.normal(size=n)
  assert metrics.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y)[0], abs=1e-12)
  assert metrics.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y)[0], abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_spearman_with_ties_matches_scipy(seed):
  rng = np.random.default_rng(300 + seed)
  # STS-B gold scores are multiples of 0.2 in [0, 5]: many ties.
  y = np.round(rng.uniform(0, 5, 200) * 5) / 5
  x = np.round(y + rng.normal(scale=1.0, size=200))
  np.testing.assert_allclose(metrics.rankdata(x), scipy.stats.rankdata(x))
  assert metrics.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y)[0], abs=1e-12)
  assert metrics.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y)[0], abs=1e-12)


def test_pearson_is_stable_for_large_offsets():
  rng = np.random.default_rng(7)
  x = 1e8 + rng.normal(size=50)
  y = x + rng.normal(size=50)
  assert metrics.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y)[0], abs=1e-9)


def test_perfect_and_inverse_correlation():
  x = np.arange(10.0)
  assert metrics.pearson(x, 3 * x + 1) == pytest.approx(1.0)
  assert metrics.spearman(x, -x ** 3) == pytest.approx(-1.0)


def test_constant_input_gives_zero_where_scipy_gives_nan():
  x = np.full(5, 0.1)  # mean(x) != 0.1 in floating point: must still be "constant"
  y = np.arange(5.0)
  with np.errstate(all="ignore"), pytest.warns(Warning):
    assert np.isnan(scipy.stats.pearsonr(x, y)[0])
  assert metrics.pearson(x, y) == 0.0
  assert metrics.pearson(y, x) == 0.0
  assert metrics.spearman(x, y) == 0.0


def test_non_finite_inputs_give_nan():
  assert np.isnan(metrics.pearson([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
  assert np.isnan(metrics.spearman([1.0, np.inf, 3.0], [1.0, 2.0, 3.0]))


# --------------------------------------------------------------------------
# SQuAD v1.1: hand-computed cases.
# --------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ("The Cat", "cat"),
    ("Paris.", "paris"),
    ("  a  big,   red   dog! ", "big red dog"),
    ("theory of an anthem", "theory of anthem"),  # articles only as whole words
    ("A.B.C.", "abc"),
    ("", ""),
])
def test_normalize_answer(raw, expected):
  assert metrics.normalize_answer(raw) == expected


def test_exact_match_score():
  assert metrics.exact_match_score("the cat", "cat") == 1.0
  assert metrics.exact_match_score("Paris.", "paris") == 1.0
  assert metrics.exact_match_score("Paris", "Paris, France") == 0.0
  assert metrics.exact_match_score("", "cat") == 0.0


def test_f1_score_by_hand():
  # "the big red dog" -> [big, red, dog]; gold [red, dog, house]: 2 shared,
  # P = 2/3, R = 2/3, F1 = 2/3.
  assert metrics.f1_score("the big red dog", "red dog house") == pytest.approx(2 / 3)
  # pred [red], gold [red, dog, house]: P = 1, R = 1/3, F1 = 2*(1/3)/(4/3) = 0.5.
  assert metrics.f1_score("Red", "red dog house") == pytest.approx(0.5)
  # Counts matter: pred [dog, dog], gold [dog]: 1 shared, P = 1/2, R = 1 -> 2/3.
  assert metrics.f1_score("dog dog", "dog") == pytest.approx(2 / 3)
  assert metrics.f1_score("", "red dog") == 0.0
  assert metrics.f1_score("cat", "red dog") == 0.0
  assert metrics.f1_score("The Dog.", "dog") == 1.0


def test_squad_scores_by_hand():
  references = {
      "q1": ["cat"],                                 # "the cat": EM 1, F1 1
      "q2": ["red dog house", "big red dog"],        # max over golds: EM 1, F1 1
      "q3": ["red dog house"],                       # EM 0, F1 2/3
      "q4": ["Denver Broncos"],                      # no prediction: 0, 0
      "q5": ["Paris"],                               # empty prediction: 0, 0
  }
  predictions = {"q1": "the cat", "q2": "the big red dog", "q3": "the big red dog",
                 "q5": "", "extra": "ignored"}
  scores = metrics.squad_scores(predictions, references)
  assert scores["exact_match"] == pytest.approx(100 * 2 / 5)
  assert scores["f1"] == pytest.approx(100 * (1 + 1 + 2 / 3) / 5)
  per_question = metrics.squad_per_question(predictions, references)
  np.testing.assert_allclose(per_question["exact_match"], [100, 100, 0, 0, 0])
  np.testing.assert_allclose(per_question["f1"], [100, 100, 200 / 3, 0, 0])


def test_squad_scores_rejects_bad_references():
  with pytest.raises(ValueError, match="q1"):
    metrics.squad_scores({"q1": "x"}, {"q1": []})
  with pytest.raises(ValueError, match="string"):
    metrics.squad_scores({"q1": "x"}, {"q1": "x"})
  with pytest.raises(ValueError):
    metrics.squad_scores({}, {})


def _official_normalize(s):
  # evaluate-v1.1.py, verbatim apart from formatting.
  def remove_articles(text):
    return re.sub(r'\b(a|an|the)\b', ' ', text)

  def white_space_fix(text):
    return ' '.join(text.split())

  def remove_punc(text):
    exclude = set(string.punctuation)
    return ''.join(ch for ch in text if ch not in exclude)

  return white_space_fix(remove_articles(remove_punc(s.lower())))


def _official_f1(prediction, ground_truth):
  prediction_tokens = _official_normalize(prediction).split()
  ground_truth_tokens = _official_normalize(ground_truth).split()
  common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0
  precision = 1.0 * num_same / len(prediction_tokens)
  recall = 1.0 * num_same / len(ground_truth_tokens)
  return (2 * precision * recall) / (precision + recall)


def test_matches_official_script_on_random_strings():
  rng = np.random.default_rng(0)
  vocab = ["the", "The", "a", "an", "cat", "Cat.", "dog", "red,", "(big)", "an-",
           "theater", "  ", "Ångström", "1,000", "U.S.", "'s"]
  for _ in range(300):
    pred = " ".join(rng.choice(vocab, int(rng.integers(0, 6))))
    gold = " ".join(rng.choice(vocab, int(rng.integers(1, 6))))
    assert metrics.normalize_answer(pred) == _official_normalize(pred)
    assert metrics.exact_match_score(pred, gold) == float(
        _official_normalize(pred) == _official_normalize(gold))
    assert metrics.f1_score(pred, gold) == pytest.approx(_official_f1(pred, gold))


# --------------------------------------------------------------------------
# task_metrics.
# --------------------------------------------------------------------------

def test_task_metrics_cola_from_logits_in_percent():
  labels = np.array([0, 1, 1, 0, 1, 1])
  logits = np.array([[2.0, -1.0], [0.1, 0.3], [-1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 2.0]])
  preds = logits.argmax(-1)
  out = metrics.task_metrics(get_task("cola"), logits, labels)
  assert set(out) == {"matthews_correlation", "accuracy"}
  assert out["matthews_correlation"] == pytest.approx(
      100 * sklearn.metrics.matthews_corrcoef(labels, preds))
  assert out["accuracy"] == pytest.approx(100 * 4 / 6)
  assert all(isinstance(v, float) for v in out.values())


def test_task_metrics_mrpc_accepts_class_ids():
  labels = [1, 0, 1, 1, 0]
  preds = [1, 1, 1, 0, 0]
  out = metrics.task_metrics(get_task("mrpc"), preds, labels)
  assert out == pytest.approx({"accuracy": 60.0,
                               "f1": 100 * sklearn.metrics.f1_score(labels, preds)})


def test_task_metrics_stsb_regression_column():
  rng = np.random.default_rng(1)
  labels = rng.uniform(0, 5, 40)
  preds = (labels + rng.normal(size=40)).astype(np.float32)[:, None]
  out = metrics.task_metrics(get_task("stsb"), preds, labels)
  assert out["pearson"] == pytest.approx(100 * scipy.stats.pearsonr(preds[:, 0], labels)[0],
                                         rel=1e-6)
  assert out["spearman"] == pytest.approx(100 * scipy.stats.spearmanr(preds[:, 0], labels)[0],
                                          rel=1e-6)


def test_task_metrics_squad():
  out = metrics.task_metrics(get_task("squad"), {"q": "the cat"}, {"q": ["cat"]})
  assert out == {"exact_match": 100.0, "f1": 100.0}


def test_task_metrics_rejects_wrong_logit_width():
  with pytest.raises(ValueError, match="3 classes"):
    metrics.task_metrics(get_task("mnli"), np.zeros((4, 2)), [0, 1, 2, 0])
