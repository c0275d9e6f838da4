"""Does SAM lose less than Adam? A paired bootstrap over dev examples and seeds.

A compression claim compares two drops measured on the same dev examples: Adam's model
before and after compression, and SAM's. With ``M`` the task's metric (accuracy or F1, in
points) of a model's predictions on a set of examples, the claim's quantity is

    gap = mean over seeds s of [(M(a_before) - M(a_after)) - (M(m_before) - M(m_after))]_s

(positive: SAM loses less). Resampling the dev examples with replacement, every model and
every seed at the same example indices (each seed's dev set is the same set, or a sample of
the same size), ``scipy.stats.bootstrap`` gives the percentile interval of ``gap``: how much
the verdict owes to which dev examples happened to be drawn. The seeds enter through the
mean, so their spread is in the point estimate; two or three seeds are too few to resample.

Where the metric is a mean over examples of per-example scores (SQuAD's F1 per question),
the rows hold those scores and ``M`` is their mean (:func:`mean`).

A claim counts as held only where the whole interval lies above zero, and as reversed where
it lies below; otherwise the run cannot decide it. The smallest effect the run could detect
is ``(z(1 - alpha/2) + z(power)) * SE`` with the bootstrap standard error ``SE``: 2.80 SE
at the 95% level and 80% power (Cohen 1988).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

HELD, REVERSED, UNDECIDED = "held", "reversed", "undecided"


class Interval(NamedTuple):
  mean: float        # the gap on the dev examples as drawn
  low: float
  high: float
  standard_error: float
  detectable: float  # the smallest gap this run would detect (80% power, two-sided 5%)


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Accuracy (points) along the last axis."""
  return 100.0 * np.mean(predictions == labels, axis=-1)


def f1(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """F1 of class 1 (points) along the last axis; 0 where nothing is predicted or true."""
  tp = np.sum((predictions == 1) & (labels == 1), axis=-1)
  fp = np.sum((predictions == 1) & (labels != 1), axis=-1)
  fn = np.sum((predictions != 1) & (labels == 1), axis=-1)
  denominator = 2 * tp + fp + fn
  return 100.0 * np.divide(2 * tp, denominator, out=np.zeros(np.shape(tp), float),
                           where=denominator > 0)


def mean(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """The mean along the last axis of per-example scores (SQuAD's per-question F1, in
  points): a metric that is already a mean over examples; ``labels`` are not used."""
  del labels
  return np.mean(scores, axis=-1)


METRICS = {"accuracy": accuracy, "f1": f1, "mean": mean}


def as_classes(digits: str) -> np.ndarray:
  """``"0110"`` -> ``array([0, 1, 1, 0])``."""
  return np.frombuffer(digits.encode(), np.uint8).astype(np.int64) - ord("0")


def as_values(predictions: str | list) -> np.ndarray:
  """A row's per-example predictions as an array: classes from a digit string
  (:func:`as_classes`), or per-example scores from a list."""
  if isinstance(predictions, str):
    return as_classes(predictions)
  return np.asarray(predictions, np.float64)


def drop_gap(labels, adam_before, adam_after, sam_before, sam_after,
             metric: str = "accuracy", indices=None) -> float:
  """``gap`` of the module docstring; arrays ``[seeds, n]`` of classes, on the examples
  ``indices`` (default all)."""
  score = METRICS[metric]
  pick = (lambda x: np.asarray(x)) if indices is None else (lambda x: np.asarray(x)[:, indices])
  y = pick(labels)
  a = score(pick(adam_before), y) - score(pick(adam_after), y)
  m = score(pick(sam_before), y) - score(pick(sam_after), y)
  return float(np.mean(a - m))


def score_gap(labels, reference, candidate, metric: str = "accuracy", indices=None) -> float:
  """The candidate's score minus the reference's, mean over seeds (arrays ``[seeds, n]``):
  for claims on where models end (a SAM ticket against an Adam ticket)."""
  score = METRICS[metric]
  pick = (lambda x: np.asarray(x)) if indices is None else (lambda x: np.asarray(x)[:, indices])
  y = pick(labels)
  return float(np.mean(score(pick(candidate), y) - score(pick(reference), y)))


def gap_interval(labels, adam_before, adam_after, sam_before, sam_after, *,
                 metric: str = "accuracy", **kwargs) -> Interval:
  """The paired bootstrap interval of :func:`drop_gap` (arrays ``[seeds, n]``)."""
  return interval(drop_gap, [labels, adam_before, adam_after, sam_before, sam_after],
                  metric=metric, **kwargs)


def score_interval(labels, reference, candidate, *, metric: str = "accuracy",
                   **kwargs) -> Interval:
  """The paired bootstrap interval of :func:`score_gap`."""
  return interval(score_gap, [labels, reference, candidate], metric=metric, **kwargs)


def interval(gap, arrays: list, *, metric: str = "accuracy", level: float = 0.95,
             resamples: int = 4000, seed: int = 0) -> Interval:
  """``gap(*arrays, metric=, indices=)`` on the dev examples as drawn, and its percentile
  interval over ``resamples`` draws of the examples (every array at the same indices)."""
  arrays = [np.atleast_2d(np.asarray(x)) for x in arrays]
  shapes = {a.shape for a in arrays}
  if len(shapes) != 1:
    raise ValueError(f"labels and predictions differ in shape: {sorted(shapes)}")

  def statistic(indices):
    return gap(*arrays, metric=metric, indices=indices)
  n = arrays[0].shape[1]
  result = stats.bootstrap((np.arange(n),), statistic, vectorized=False,
                           n_resamples=resamples, confidence_level=level,
                           method="percentile", rng=np.random.default_rng(seed))
  se = float(result.standard_error)
  power_z = stats.norm.ppf(1 - (1 - level) / 2) + stats.norm.ppf(0.8)
  low, high = result.confidence_interval
  return Interval(statistic(None), float(low), float(high), se, float(power_z * se))


def verdict(interval: Interval) -> str:
  """``held`` when the interval lies above zero, ``reversed`` below, else ``undecided``."""
  if interval.low > 0:
    return HELD
  if interval.high < 0:
    return REVERSED
  return UNDECIDED
