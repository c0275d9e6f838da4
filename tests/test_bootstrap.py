"""paper.legacy.bootstrap against hand-computed gaps and the analytic standard error."""

import numpy as np
import pytest

from paper.legacy import bootstrap as B


def test_correct_reads_digit_strings():
  np.testing.assert_array_equal(B.correct("0110", "0100"), [1.0, 1.0, 0.0, 1.0])
  with pytest.raises(ValueError):
    B.correct("01", "010")


def test_drop_gap_by_hand():
  # Adam: 4/4 -> 2/4 (drops 50 points); SAM: 4/4 -> 3/4 (drops 25): SAM loses 25 less.
  gap = B.drop_gap([1, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 1], [1, 1, 0, 1])
  np.testing.assert_array_equal(gap, [[0.0, 100.0, 0.0, 0.0]])
  assert gap.mean() == 25.0


def test_a_constant_gap_has_no_spread():
  iv = B.interval(np.full((2, 50), 3.0))
  assert iv == (3.0, 3.0, 3.0)


def test_seeds_are_resampled_on_the_same_examples():
  # Two seeds that disagree example by example but cancel on each: the mean over seeds
  # is 0 on every example, so every resample is 0; independent resampling would not be.
  g = np.random.default_rng(0).normal(size=300)
  assert B.interval(np.stack([g, -g])) == (0.0, 0.0, 0.0)


def test_interval_width_matches_the_standard_error():
  # +-50 with equal chance on 400 examples: sd 50, standard error 2.5, so a 95% interval
  # about 1.96 x 2.5 = 4.9 either side of the mean.
  g = np.where(np.random.default_rng(1).random(400) < 0.5, 50.0, -50.0)
  iv = B.interval(g, resamples=4000)
  se = g.std() / np.sqrt(len(g))
  assert iv.mean == pytest.approx(g.mean())
  assert (iv.high - iv.low) / 2 == pytest.approx(1.96 * se, rel=0.1)
  assert B.fmt(B.Interval(1.0, -0.5, 2.25)) == "+1.00 [-0.50, +2.25]"
