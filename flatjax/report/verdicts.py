"""Whether a claim held, from per-seed differences, and how to print numbers over seeds.

A claim is tested on a difference oriented so that a positive value is what the
paper claims (e.g. Adam's accuracy drop minus SAM's: positive = SAM loses less).
Over the seeds (or task pairs) measured:

* ``held``: the mean is positive and every value is;
* ``mixed``: the mean is positive but some value is not;
* ``did not hold``: the mean is zero or negative;
* ``not testable``: the models compared scored within ``CHANCE_MARGIN`` points of
  always predicting the most frequent label, so the comparison says nothing;
* ``no data``: nothing was measured.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

HELD, MIXED, NOT_HELD, NOT_TESTABLE, NO_DATA = (
    "held", "mixed", "did not hold", "not testable", "no data")
CHANCE_MARGIN = 1.0


def verdict(diffs: Sequence[float], testable: bool = True) -> str:
  """The verdict on claim-oriented differences (see the module docstring)."""
  values = [float(d) for d in diffs if d is not None and not math.isnan(float(d))]
  if not values:
    return NO_DATA
  if not testable:
    return NOT_TESTABLE
  mean = sum(values) / len(values)
  if mean <= 0:
    return NOT_HELD
  return HELD if all(v > 0 for v in values) else MIXED


def above_chance(scores: Iterable[float], chance: float | None) -> bool:
  """Whether the mean of ``scores`` is more than ``CHANCE_MARGIN`` above ``chance``."""
  values = [float(s) for s in scores]
  if not values:
    return False
  if chance is None:
    return True
  return sum(values) / len(values) > chance + CHANCE_MARGIN


def mean(values: Sequence[float]) -> float:
  return sum(values) / len(values) if values else float("nan")


def fmt(value: float | None, digits: int = 2) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  return f"{value:.{digits}f}"


def fmt_signed(value: float | None, digits: int = 2) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  return f"{value:+.{digits}f}"


def fmt_seeds(values: Sequence[float], digits: int = 2) -> str:
  """``"79.70"`` for the mean, with the seeds' values when there are several:
  ``"79.70 (80.39, 79.01)"``."""
  if not values:
    return "–"
  if len(values) == 1:
    return fmt(values[0], digits)
  return f"{fmt(mean(values), digits)} ({', '.join(fmt(v, digits) for v in values)})"


def fmt_transition(before: Sequence[float], after: Sequence[float], digits: int = 2) -> str:
  """``"80.39 -> 77.64 (-2.75)"``, means over seeds, the change in brackets."""
  if not before or not after:
    return "–"
  b, a = mean(before), mean(after)
  return f"{fmt(b, digits)} → {fmt(a, digits)} ({fmt_signed(a - b, digits)})"
