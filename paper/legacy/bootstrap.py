"""Bootstrap intervals for "SAM loses less than Adam" on one dev set, over seeds.

A compression claim compares two drops measured on the same dev examples: Adam's model
before and after compression, and SAM's. Per example ``i`` and seed ``s`` the claim's
quantity is (in points, 1 = correct)

    g[s, i] = 100 * ((a_before - a_after) - (m_before - m_after))[s, i]

whose mean over examples and seeds is "Adam's accuracy drop minus SAM's" (positive: SAM
loses less). Resampling the dev examples with replacement, the same indices for every seed
(the seeds share the dev set), gives the percentile interval of that mean (Efron &
Tibshirani 1993, ch. 13): it measures how much the verdict owes to which dev examples
happened to be drawn, not the seed-to-seed spread.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Interval(NamedTuple):
  mean: float
  low: float
  high: float


def correct(preds: str | np.ndarray, labels: str | np.ndarray) -> np.ndarray:
  """1.0 where a prediction equals its label; either may be a digit string ("0110")."""
  as_array = lambda x: np.frombuffer(x.encode(), np.uint8) - 48 if isinstance(x, str) else x
  p, y = as_array(preds), as_array(labels)
  if p.shape != y.shape:
    raise ValueError(f"{p.shape[0]} predictions for {y.shape[0]} labels")
  return (p == y).astype(np.float64)


def drop_gap(adam_before, adam_after, sam_before, sam_after) -> np.ndarray:
  """Per-example ``g`` of the module docstring from 0/1 correctness arrays ``[seeds, n]``."""
  a = np.asarray(adam_before) - np.asarray(adam_after)
  m = np.asarray(sam_before) - np.asarray(sam_after)
  return 100.0 * np.atleast_2d(a - m)


def interval(per_example: np.ndarray, resamples: int = 2000, level: float = 0.95,
             seed: int = 0) -> Interval:
  """The mean of ``per_example`` ``[seeds, n]`` and its percentile bootstrap interval,
  resampling the ``n`` examples (columns) with replacement."""
  g = np.atleast_2d(np.asarray(per_example, np.float64))
  n = g.shape[1]
  per_column = g.mean(axis=0)  # the seeds' mean per example: resampled columns keep it
  idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
  means = per_column[idx].mean(axis=1)
  tail = (1.0 - level) / 2
  return Interval(float(per_column.mean()), float(np.quantile(means, tail)),
                  float(np.quantile(means, 1.0 - tail)))


def fmt(iv: Interval, digits: int = 2) -> str:
  """``"+0.84 [−1.20, +2.90]"``."""
  return f"{iv.mean:+.{digits}f} [{iv.low:+.{digits}f}, {iv.high:+.{digits}f}]"
