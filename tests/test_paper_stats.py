"""paper.stats: the paired bootstrap of "Adam's drop minus SAM's" against hand-derived
values: the normal approximation of a binomial mean, an F1 worked by hand, the mean over
seeds, and the verdict's three outcomes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paper import stats


def _one_seed_case(n=400, lost=100):
  """Both models right on every example before compression; Adam's compressed model
  wrong on ``lost`` of them, SAM's on none."""
  labels = np.zeros((1, n), int)
  adam_after = labels.copy()
  adam_after[0, :lost] = 1
  return labels, labels.copy(), adam_after, labels.copy(), labels.copy()


def test_interval_is_the_binomial_normal_approximation():
  # gap_i = 100 * [Adam's model lost example i]: mean 100 p, SE 100 sqrt(p (1 - p) / n).
  n, p = 400, 0.25
  iv = stats.gap_interval(*_one_seed_case(n, int(p * n)))
  se = 100 * math.sqrt(p * (1 - p) / n)                      # 2.165 points
  assert iv.mean == pytest.approx(25.0)
  assert iv.standard_error == pytest.approx(se, rel=0.06)
  assert iv.low == pytest.approx(25.0 - 1.96 * se, abs=0.6)   # 20.76
  assert iv.high == pytest.approx(25.0 + 1.96 * se, abs=0.6)  # 29.24
  assert iv.detectable == pytest.approx((1.959964 + 0.841621) * se, rel=0.06)  # 6.06
  assert stats.verdict(iv) == stats.HELD


def test_sam_losing_more_is_reversed_and_no_difference_undecided():
  labels, ab, aa, mb, ma = _one_seed_case()
  assert stats.verdict(stats.gap_interval(labels, mb, ma, ab, aa)) == stats.REVERSED
  same = stats.gap_interval(labels, ab, ab, mb, mb)
  assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
  assert stats.verdict(same) == stats.UNDECIDED


def test_f1_gap_worked_by_hand():
  labels = [[1, 1, 0, 0]]
  # Adam: 100 -> F1 of tp 1, fp 1, fn 1 = 2/4 = 50; SAM: 100 -> tp 2, fp 1, fn 0 = 4/5 = 80.
  gap = stats.drop_gap(labels, [[1, 1, 0, 0]], [[1, 0, 0, 1]], [[1, 1, 0, 0]], [[1, 1, 1, 0]],
                       metric="f1")
  assert gap == pytest.approx((100 - 50) - (100 - 80))
  assert stats.f1(np.array([0, 0]), np.array([0, 0])) == 0.0


def test_the_gap_is_the_mean_over_seeds():
  labels = np.zeros((2, 10), int)
  adam_after = labels.copy()
  adam_after[0, :1] = 1      # seed 0: Adam loses 10 points
  adam_after[1, :3] = 1      # seed 1: 30 points
  assert stats.drop_gap(labels, labels, adam_after, labels, labels) == pytest.approx(20.0)


def test_digits_and_shapes():
  assert stats.as_classes("0120").tolist() == [0, 1, 2, 0]
  with pytest.raises(ValueError, match="differ in shape"):
    stats.gap_interval([[0, 1]], [[0, 1]], [[0, 1]], [[0, 1]], [[0, 1, 1]])


def _rows(seed, adam_after, sam_after, predictions=True):
  """One seed's dense and IMP rows: both dense models right on all 20 examples."""
  labels = "0" * 20
  rows = []
  for optimizer, after in (("adam", adam_after), ("sam", sam_after)):
    ids = {"task": "sst2", "seed": seed, "optimizer": optimizer, "metric": "validation/accuracy",
           "rho": 0.05 if optimizer == "sam" else None}
    rows.append({**ids, "compression": "none", "score": 100.0,
                 **({"labels": labels, "predictions": labels} if predictions else {})})
    rows.append({**ids, "compression": "imp", "score": 100.0 - 5 * after.count("1"),
                 "base": 100.0, **({"predictions": after} if predictions else {})})
  return rows


def test_claims_from_rows_pair_the_seeds_models():
  from paper import claims
  # Adam's IMP model loses 4 and 6 of 20 examples (20 and 30 points); SAM's none.
  rows = (_rows(0, "1111" + "0" * 16, "0" * 20) + _rows(1, "1" * 6 + "0" * 14, "0" * 20))
  (claim,) = claims.claims("compare", rows)
  assert (claim.task, claim.compression, claim.candidate, claim.seeds) == (
      "sst2", "imp", "sam ρ 0.05", [0, 1])
  assert (claim.reference_value, claim.candidate_value) == (25.0, 0.0)
  assert claim.interval.mean == pytest.approx(25.0) and claim.verdict == stats.HELD
  (no_predictions,) = claims.claims("compare", _rows(0, "1" * 4 + "0" * 16, "0" * 20, False))
  assert no_predictions.interval is None and no_predictions.note == "rows without dev predictions"
  assert "| **no interval** |" in claims.markdown([no_predictions])[-1]


def test_score_claims_compare_where_the_models_end():
  from paper import claims
  rows = _rows(0, "1111" + "0" * 16, "0" * 20)
  (claim,) = claims.claims("tickets", rows, [{"reference": "adam", "candidate": "sam",
                                               "kind": "score"}])
  assert (claim.reference_value, claim.candidate_value) == (80.0, 100.0)
  assert claim.interval.mean == pytest.approx(20.0) and claim.verdict == stats.HELD
  assert "imp: sam ρ 0.05 ends higher than adam" in claims.markdown([claim])[-1].replace(
      "IMP", "imp")


def test_score_gap_by_hand():
  # Candidate right on 3 of 4, reference on 1 of 4: +50 points.
  assert stats.score_gap([[0, 0, 0, 0]], [[1, 1, 1, 0]], [[0, 0, 0, 1]]) == pytest.approx(50.0)


def test_a_model_at_the_majority_label_is_named_beside_the_interval():
  from paper import claims
  # 20 labels, 15 of class 0: the majority label scores 75%, two standard errors 19.4
  # points. Adam's dense model is right on all 20 (100%), SAM's on the 15 zeros only.
  labels = "0" * 15 + "1" * 5
  rows = []
  for optimizer, dense in (("adam", labels), ("sam", "0" * 20)):
    ids = {"task": "sst2", "seed": 0, "optimizer": optimizer, "metric": "validation/accuracy"}
    right = sum(a == b for a, b in zip(dense, labels))
    rows += [{**ids, "compression": "none", "score": 5.0 * right, "labels": labels,
              "predictions": dense},
             {**ids, "compression": "int8", "score": 5.0 * right, "base": 5.0 * right,
              "predictions": dense}]
  (claim,) = claims.claims("x", rows)
  assert claim.note == ("sam fine-tuned and compressed within 2 SE of the majority label "
                        "(75.0%)")
  assert claim.at_chance and claim.verdict == stats.UNDECIDED   # both lose nothing


def test_compressed_models_at_the_majority_label_are_named_too():
  from paper import claims
  # 200 labels, 150 of class 0: the majority label scores 75%, two standard errors 6.1
  # points. Adam's dense model is right on all 200, SAM's on 180 (the zeros and 30 of
  # the ones); both compressed models predict 0 everywhere (75%). Adam loses 25 points,
  # SAM 15: SAM "loses less" only because it had less to lose.
  labels = "0" * 150 + "1" * 50
  rows = []
  for optimizer, dense in (("adam", labels), ("sam", "0" * 170 + "1" * 30)):
    ids = {"task": "sst2", "seed": 0, "optimizer": optimizer, "metric": "validation/accuracy"}
    right = sum(a == b for a, b in zip(dense, labels))
    rows += [{**ids, "compression": "none", "score": 0.5 * right, "labels": labels,
              "predictions": dense},
             {**ids, "compression": "imp", "sparsity": 0.6, "score": 75.0,
              "base": 0.5 * right, "predictions": "0" * 200}]
  (claim,) = claims.claims("x", rows)
  assert (claim.reference_value, claim.candidate_value) == (25.0, 15.0)
  assert claim.note == ("adam compressed, sam compressed within 2 SE of the majority label "
                        "(75.0%)")
  assert claim.at_chance


def test_seeds_without_predictions_are_left_out_of_the_interval_and_named():
  from paper import claims
  rows = (_rows(0, "1111" + "0" * 16, "0" * 20) + _rows(1, "1" * 6 + "0" * 14, "0" * 20, False))
  (claim,) = claims.claims("compare", rows)
  assert claim.seeds == [0, 1] and claim.reference_value == 25.0   # means over both seeds
  assert claim.interval.mean == pytest.approx(20.0)                 # seed 0 only
  assert claim.note.startswith("interval over seed 0 only (the others kept no dev predictions)")


def test_squad_claims_bootstrap_each_questions_f1():
  from paper import claims
  # Per-question F1 of 4 questions; Adam's IMP model loses 50 points on one question
  # (12.5 points of mean F1), SAM's loses 25 points on another (6.25): gap 6.25.
  rows = []
  for optimizer, after in (("adam", [100.0, 50.0, 0.0, 50.0]), ("sam", [75.0, 50.0, 0.0, 100.0])):
    ids = {"task": "squad", "seed": 0, "optimizer": optimizer, "metric": "validation/f1"}
    rows += [{**ids, "compression": "none", "score": 62.5, "labels": None,
              "predictions": [100.0, 50.0, 0.0, 100.0]},
             {**ids, "compression": "imp", "score": float(np.mean(after)), "base": 62.5,
              "predictions": after}]
  (claim,) = claims.claims("compare", rows)
  assert claim.metric == "f1" and (claim.reference_value, claim.candidate_value) == (12.5, 6.25)
  assert claim.interval.mean == pytest.approx(6.25)
  # Resampling 4 questions: the gap is 50/4 * (#q4 drawn) - 25/4 * (#q1 drawn), between
  # -25 (q1 four times) and +50 (q4 four times); zero stays inside the 95% interval.
  assert -25 <= claim.interval.low < 0 < claim.interval.high <= 50
  assert claim.verdict == stats.UNDECIDED


def test_mean_metric_and_values():
  assert stats.mean(np.array([[100.0, 50.0], [0.0, 0.0]]), None).tolist() == [75.0, 0.0]
  assert stats.as_values([66.5, 0.0]).tolist() == [66.5, 0.0]
  assert stats.as_values("012").tolist() == [0, 1, 2]


def test_the_summary_counts_decided_claims_with_a_model_at_the_majority_label(tmp_path):
  import json
  from paper import __main__ as report
  from experiments import collect
  # Adam's model is right on all 20 and its int8 model only on the 15 zeros: it loses 25
  # points; SAM's predicts the majority label before and after and loses nothing. The
  # interval of 25 - 0 lies above zero (held), with SAM at the majority label.
  labels = "0" * 15 + "1" * 5
  rows = []
  for optimizer, dense, int8 in (("adam", labels, "0" * 20), ("sam", "0" * 20, "0" * 20)):
    ids = {"task": "sst2", "seed": 0, "optimizer": optimizer, "metric": "validation/accuracy"}
    score = lambda p: 5.0 * sum(a == b for a, b in zip(p, labels))  # noqa: E731
    rows += [{**ids, "compression": "none", "score": score(dense), "labels": labels,
              "predictions": dense},
             {**ids, "compression": "int8", "score": score(int8), "base": score(dense),
              "predictions": int8}]
  (tmp_path / "compare").mkdir()
  (tmp_path / "compare" / collect.ROWS_FILE).write_text(
      "".join(json.dumps(r) + "\n" for r in rows))
  summary = report.claims_section(tmp_path)[2]
  assert summary.startswith("1 held, 0 reversed, 0 undecided, 0 no interval of 1 claims.")
  assert "In 1 of the 1 held or reversed, a model scores within 2 SE" in summary
