"""Evaluation metrics for GLUE and SQuAD v1.1, in plain numpy.

GLUE (Wang et al. 2019) reports accuracy, binary F1 (MRPC, QQP), Matthews
correlation (CoLA) and Pearson / Spearman correlation (STS-B). Each function
here reproduces the reference implementation the GLUE scripts use
(``sklearn.metrics`` and ``scipy.stats``) without depending on either, so the
library only needs numpy; the tests check them against sklearn and scipy.

SQuAD v1.1 exact match and F1 follow the official ``evaluate-v1.1.py`` of
Rajpurkar et al. (2016) line by line: answers are normalised (lower case, no
punctuation, no articles, single spaces), each prediction is scored against
every gold answer and the best score counts.

Units: the per-example functions return fractions in [0, 1]; the aggregate
entry points :func:`squad_scores` and :func:`task_metrics` return percentages
(x100), the unit of the official SQuAD script and of the paper's tables
(e.g. SST-2 accuracy 92.7, STS-B Pearson 89.0, CoLA MCC 58.1).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # only for annotations: keeps metrics importable on its own
  from flatjax.data.tasks import TaskSpec

ArrayLike = Any  # anything np.asarray accepts: lists, numpy or jax arrays


# --------------------------------------------------------------------------
# Classification and regression metrics (GLUE).
# --------------------------------------------------------------------------


def _paired_1d(preds: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  preds = np.asarray(preds)
  labels = np.asarray(labels)
  if preds.ndim != 1 or labels.ndim != 1:
    raise ValueError(
        f"expected 1-D predictions and labels, got shapes {preds.shape} and {labels.shape}")
  if preds.shape != labels.shape:
    raise ValueError(
        f"predictions and labels differ in length: {preds.shape[0]} vs {labels.shape[0]}")
  if preds.size == 0:
    raise ValueError("cannot compute a metric over zero examples")
  return preds, labels


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
  """Fraction of exact matches, ``mean(preds == labels)``.

  Same as ``sklearn.metrics.accuracy_score``.
  """
  preds, labels = _paired_1d(preds, labels)
  return float(np.mean(preds == labels))


def f1(preds: ArrayLike, labels: ArrayLike, positive: Any = 1) -> float:
  """Binary F1 of class ``positive``: ``2 TP / (2 TP + FP + FN)``.

  This equals the harmonic mean of precision and recall whenever both are
  defined. When the denominator is 0 (no positive predicted and none true) the
  score is 0.0, as ``sklearn.metrics.f1_score(..., zero_division=0)``.
  """
  preds, labels = _paired_1d(preds, labels)
  pred_pos = preds == positive
  true_pos = labels == positive
  tp = np.sum(pred_pos & true_pos)
  fp = np.sum(pred_pos & ~true_pos)
  fn = np.sum(~pred_pos & true_pos)
  denom = 2 * tp + fp + fn
  if denom == 0:
    return 0.0
  return float(2 * tp / denom)


def matthews_correlation(preds: ArrayLike, labels: ArrayLike) -> float:
  """Matthews correlation coefficient, multi-class (Gorodkin 2004) form.

  With the confusion matrix ``C`` (rows: true class, columns: predicted),
  ``t = C.sum(1)``, ``p = C.sum(0)``, ``c = trace(C)`` and ``s = C.sum()``::

    MCC = (c s - t.p) / sqrt((s^2 - p.p) (s^2 - t.t))

  which reduces to the usual binary formula for two classes. As in
  ``sklearn.metrics.matthews_corrcoef`` the result is 0.0 when undefined
  (all predictions, or all labels, in one class).
  """
  preds, labels = _paired_1d(preds, labels)
  classes, inverse = np.unique(np.concatenate([labels, preds]), return_inverse=True)
  n = labels.shape[0]
  y_true, y_pred = inverse[:n], inverse[n:]
  k = classes.shape[0]
  # float64 throughout: s^2 overflows int32 beyond ~46k examples (QQP has 40k).
  confusion = np.zeros((k, k), dtype=np.float64)
  np.add.at(confusion, (y_true, y_pred), 1.0)
  t_sum = confusion.sum(axis=1)
  p_sum = confusion.sum(axis=0)
  n_correct = np.trace(confusion)
  n_samples = confusion.sum()
  cov_ytyp = n_correct * n_samples - np.dot(t_sum, p_sum)
  cov_ypyp = n_samples ** 2 - np.dot(p_sum, p_sum)
  cov_ytyt = n_samples ** 2 - np.dot(t_sum, t_sum)
  if cov_ypyp * cov_ytyt == 0:
    return 0.0
  return float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def _float_pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  x, y = _paired_1d(x, y)
  if x.shape[0] < 2:
    raise ValueError("a correlation needs at least 2 examples")
  return x.astype(np.float64), y.astype(np.float64)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    return float("nan")
  # Test constancy exactly, as scipy does: x - mean(x) of a constant float
  # array need not be exactly zero, which would give a meaningless r.
  if np.all(x == x[0]) or np.all(y == y[0]):
    return 0.0
  xm = x - x.mean()
  ym = y - y.mean()
  # Normalise before the dot product (as scipy.stats.pearsonr) to avoid
  # overflow for large values; the clip removes rounding beyond +-1.
  r = np.dot(xm / np.linalg.norm(xm), ym / np.linalg.norm(ym))
  return float(np.clip(r, -1.0, 1.0))


def pearson(x: ArrayLike, y: ArrayLike) -> float:
  """Pearson correlation ``sum(xc yc) / sqrt(sum(xc^2) sum(yc^2))``, ``xc = x - mean(x)``.

  Same value as ``scipy.stats.pearsonr(x, y)[0]``, except that a constant
  input, where the correlation is undefined (scipy: NaN), gives 0.0 like
  :func:`matthews_correlation`, so that picking the best checkpoint never
  compares NaNs. Non-finite inputs (a diverged run) give NaN.
  """
  return _pearson(*_float_pair(x, y))


def rankdata(a: ArrayLike) -> np.ndarray:
  """Ranks 1..n of a 1-D array, ties getting the average of their ranks.

  The ``method="average"`` ranking of ``scipy.stats.rankdata``.
  """
  a = np.asarray(a).ravel()
  sorter = np.argsort(a, kind="mergesort")
  inv = np.empty(sorter.size, dtype=np.intp)
  inv[sorter] = np.arange(sorter.size, dtype=np.intp)
  a_sorted = a[sorter]
  # obs marks the first element of each run of equal values, dense is the
  # 1-based number of each element's run and count[d] the sorted position
  # where run d+1 starts, so run d holds ranks count[d-1]+1 .. count[d]; ties
  # get the mean of the two ends.
  obs = np.concatenate([[True], a_sorted[1:] != a_sorted[:-1]])
  dense = np.cumsum(obs)[inv]
  count = np.concatenate([np.nonzero(obs)[0], [obs.size]])
  return 0.5 * (count[dense] + count[dense - 1] + 1)


def spearman(x: ArrayLike, y: ArrayLike) -> float:
  """Spearman rank correlation: :func:`pearson` of the average-tie ranks.

  Same value as ``scipy.stats.spearmanr(x, y)[0]``; a constant input gives
  0.0 (scipy: NaN), non-finite inputs give NaN, as for :func:`pearson`.
  """
  x, y = _float_pair(x, y)
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    return float("nan")
  return _pearson(rankdata(x), rankdata(y))


# --------------------------------------------------------------------------
# SQuAD v1.1 official evaluation (Rajpurkar et al. 2016, evaluate-v1.1.py).
# --------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
  """Lower-cases, strips ``string.punctuation``, drops the articles a/an/the
  (whole words) and collapses whitespace, in that order, as the official
  ``evaluate-v1.1.py``."""
  s = s.lower()
  s = "".join(ch for ch in s if ch not in _PUNCTUATION)
  s = _ARTICLES.sub(" ", s)
  return " ".join(s.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
  """1.0 if the normalised strings are equal, else 0.0."""
  return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
  """Token-level F1 of the normalised answers.

  With ``same`` the size of the multiset intersection of the whitespace
  tokens: ``precision = same / len(pred)``, ``recall = same / len(gold)``,
  ``F1 = 2 P R / (P + R)``; 0.0 when no token is shared (this includes an
  empty prediction).
  """
  prediction_tokens = normalize_answer(prediction).split()
  ground_truth_tokens = normalize_answer(ground_truth).split()
  common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0.0
  precision = num_same / len(prediction_tokens)
  recall = num_same / len(ground_truth_tokens)
  return 2 * precision * recall / (precision + recall)


def squad_per_question(predictions: Mapping[str, str],
                       references: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
  """Each question's SQuAD v1.1 exact match and F1 in percent, in ``references`` order.

  A question's prediction is scored against every gold answer and the maximum counts, as
  the official ``evaluate-v1.1.py``; a question without a prediction scores 0 (the
  official script prints a warning for it); predictions for ids not in ``references``
  are ignored. Their means are :func:`squad_scores`; kept per question, two models can
  be compared question by question (a paired bootstrap).

  Args:
    predictions: question id -> predicted answer text.
    references: question id -> gold answer texts (at least one each).

  Returns:
    ``{"exact_match": [n], "f1": [n]}``, float64 in [0, 100].
  """
  if not references:
    raise ValueError("squad scores need at least one reference question")
  scores = np.zeros((2, len(references)))
  for i, (qid, golds) in enumerate(references.items()):
    if isinstance(golds, str):
      # A bare string would be scored character by character: refuse it.
      raise ValueError(f"references[{qid!r}] must be a list of answer texts, got a string")
    if len(golds) == 0:
      raise ValueError(f"question {qid!r} has no gold answers; SQuAD v1.1 needs at least one")
    if qid in predictions:
      pred = predictions[qid]
      scores[:, i] = (max(exact_match_score(pred, g) for g in golds),
                      max(f1_score(pred, g) for g in golds))
  return {"exact_match": 100.0 * scores[0], "f1": 100.0 * scores[1]}


def squad_scores(predictions: Mapping[str, str],
                 references: Mapping[str, Sequence[str]]) -> dict[str, float]:
  """SQuAD v1.1 exact match and F1 in percent, as the official script: the means over
  the reference questions of :func:`squad_per_question`.

  Returns:
    ``{"exact_match": EM, "f1": F1}``, both in [0, 100].
  """
  return {name: float(np.mean(values))
          for name, values in squad_per_question(predictions, references).items()}


# --------------------------------------------------------------------------
# Per-task entry point.
# --------------------------------------------------------------------------

_GLUE_METRICS = {
    "accuracy": accuracy,
    "f1": f1,  # positive class 1: "equivalent" (MRPC), "duplicate" (QQP)
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearman": spearman,
}


def task_metrics(task: TaskSpec, predictions: Any, labels: Any) -> dict[str, float]:
  """Every metric in ``task.metrics``, in percent (x100) as the paper's tables.

  Args:
    task: the task's :class:`~flatjax.data.tasks.TaskSpec`.
    predictions: classification: class ids ``[n]`` or logits ``[n, C]``
      (argmax is taken); regression: scores ``[n]`` or ``[n, 1]``; span
      (SQuAD): ``dict`` question id -> answer text.
    labels: class ids / gold scores ``[n]``; for SQuAD, ``dict`` question
      id -> list of gold answer texts.

  Returns:
    metric name -> value, e.g. ``{"matthews_correlation": 58.1, "accuracy": 83.2}``
    for CoLA; SQuAD's exact match and F1 are percentages already.
  """
  if task.kind == "span":
    scores = squad_scores(predictions, labels)
    return {name: scores[name] for name in task.metrics}

  preds = np.asarray(predictions)
  labels = np.asarray(labels)
  if task.is_regression:
    if preds.ndim == 2 and preds.shape[1] == 1:
      preds = preds[:, 0]
    preds = preds.astype(np.float64)
    labels = labels.astype(np.float64)
  else:
    if preds.ndim == 2:
      if preds.shape[1] != task.num_labels:
        raise ValueError(
            f"{task.name}: logits have {preds.shape[1]} columns, the task has "
            f"{task.num_labels} classes")
      preds = np.argmax(preds, axis=-1)
  out = {}
  for name in task.metrics:
    if name not in _GLUE_METRICS:
      raise ValueError(f"{task.name}: no implementation for metric {name!r}")
    out[name] = 100.0 * _GLUE_METRICS[name](preds, labels)
  return out
