"""Whether a claim held, from per-seed differences, and how to print numbers over seeds.

A claim is tested on a difference oriented so that a positive value is what the
paper claims (e.g. Adam's accuracy drop minus SAM's: positive = SAM loses less).
Over the seeds (or task pairs) measured:

* ``held``: the mean is positive and every value is;
* ``mixed``: the mean is positive but some value is not;
* ``did not hold``: the mean is zero or negative;
* ``not testable``: the models compared scored within the margin of always
  predicting the most frequent label (:class:`ChanceLevel`), so the comparison
  says nothing; for a compression claim this is decided per seed
  (:func:`seed_testable`), and only the seeds that say something are counted;
* ``no data``: nothing was measured.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence

HELD, MIXED, NOT_HELD, NOT_TESTABLE, NO_DATA = (
    "held", "mixed", "did not hold", "not testable", "no data")
#: The least margin (points) above the majority label: where no dev-set size is known, and
#: for metrics other than accuracy.
CHANCE_MARGIN = 1.0


class ChanceLevel(NamedTuple):
  """A dev set's majority-label score and the margin (points) a model must clear to be
  told apart from it."""
  score: float
  margin: float = CHANCE_MARGIN


def sampling_margin(accuracy: float, examples: int) -> float:
  """Two binomial standard errors, in points, of an accuracy near ``accuracy`` (%) on
  ``examples`` dev examples: ``200 sqrt(p (1 - p) / n)`` with ``p = accuracy / 100``, at
  least ``CHANCE_MARGIN``. A model whose score is within it of the majority label's
  cannot be told apart from predicting that label (e.g. 4.47 points at 50% on 500)."""
  p = accuracy / 100.0
  return max(CHANCE_MARGIN, 200.0 * math.sqrt(p * (1.0 - p) / examples))


def verdict(diffs: Sequence[float], testable: bool = True) -> str:
  """The verdict on claim-oriented differences (see the module docstring)."""
  values = [float(d) for d in diffs if d is not None and not math.isnan(float(d))]
  if not values:
    return NO_DATA
  if not testable:
    return NOT_TESTABLE
  mean = sum(values) / len(values)
  # Scores are counts over the dev set, so equal and opposite seeds cancel exactly; the
  # float sum may leave ~1e-15, which must not read as "the mean goes the paper's way".
  if mean <= 1e-9:
    return NOT_HELD
  return HELD if all(v > 0 for v in values) else MIXED


def above_chance(scores: Iterable[float], chance: ChanceLevel | None) -> bool:
  """Whether the mean of ``scores`` is more than ``chance.margin`` above ``chance.score``
  (True where no chance level is known)."""
  values = [float(s) for s in scores]
  if not values:
    return False
  if chance is None:
    return True
  return sum(values) / len(values) > chance.score + chance.margin


def seed_testable(before: Sequence[float], after: Sequence[float],
                  chance: ChanceLevel | None) -> bool:
  """Whether one seed's "which model loses less to compression" says anything: every
  model compared is above ``chance`` before compression (a model at the majority label has
  nothing to lose) and at least one is after (if both compressed models are at the
  majority label, the difference of drops is only the difference of the starting scores)."""
  return (all(above_chance([b], chance) for b in before)
          and any(above_chance([a], chance) for a in after))


def collapsed(before: Sequence[float], after: Sequence[float],
              chance: ChanceLevel | None) -> bool:
  """Whether compression alone made one seed untestable: every model was above ``chance``
  before it and none is after (the second way :func:`seed_testable` fails)."""
  return (all(above_chance([b], chance) for b in before)
          and not any(above_chance([a], chance) for a in after))


def verdict_by_seed(diffs: Sequence[float], testable: Sequence[bool]) -> str:
  """The verdict on the seeds whose comparison is testable (:func:`seed_testable`);
  ``not testable`` if none is."""
  if not diffs:
    return NO_DATA
  counted = [d for d, t in zip(diffs, testable) if t]
  return verdict(counted) if counted else NOT_TESTABLE


def mean(values: Sequence[float]) -> float:
  return sum(values) / len(values) if values else float("nan")


def fmt(value: float | None, digits: int = 2) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "–"
  return f"{value:.{digits}f}"


def fmt_chance(chance: ChanceLevel | None) -> str:
  """``"51.2 ± 4.5"``: the majority label's score and the margin around it."""
  return "–" if chance is None else f"{chance.score:.1f} ± {chance.margin:.1f}"


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
