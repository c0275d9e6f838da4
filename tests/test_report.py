"""python -m paper (the earlier sections): verdicts, sections and the written report, on hand-made result folders
whose differences are worked out by hand below."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paper import numbers as paper
from paper.__main__ import main as paper_main
from paper.legacy import build_report, build_sections, render, sections, verdict
from paper.legacy import verdicts as V

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, obj) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(obj))


def _write_jsonl(path: Path, rows) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


TRAIN = {"model": "minilm", "max_train_examples": 640, "epochs": 2.0, "lr": 1e-4,
         "batch_size": 32, "max_length": 128}


def _quantize(fp32: float, int8: float, metric: str = "accuracy") -> dict:
  return {"float32": {"validation": {metric: fp32}},
          "int8": {"dynamic": {"metrics": {"validation": {metric: int8}}}}}


def _compare(results: Path, task: str, seed: int, adam: dict, sam: dict,
             sparsity: float = 0.6) -> None:
  """adam/sam: full, imp, oneshot, int8 scores (accuracy) at the reference ``sparsity``, and
  optionally ``curve``, the one-shot curve {sparsity: score} (default: dense and
  ``sparsity``)."""
  d = results / f"compare_{task}" / f"seed{seed}"
  _write(d / "compare.json", {"train": TRAIN, "scope": "encoder", "rounds": 2})
  opts = {}
  for name, s in (("adam", adam), ("sam", sam)):
    opts[name] = {"metric": "validation/accuracy", "full": s["full"], "imp": s["imp"],
                  "imp_sparsity": sparsity, "oneshot": s["oneshot"],
                  "oneshot_sparsity": sparsity, "oneshot_dense": s["full"], "int8": s["int8"],
                  "int8_float32": s["full"]}
    _write(d / name / "quantize.json", _quantize(s["full"], s["int8"]))
    curve = s.get("curve", {0.0: s["full"], sparsity: s["oneshot"]})
    (d / name / "oneshot.jsonl").write_text("".join(
        json.dumps({"target_sparsity": t, "sparsity": t - 1e-8, "metric": score,
                    "metric_name": "validation/accuracy", "label": name}) + "\n"
        for t, score in curve.items()))
  _write(d / "results.json", {"task": task, "sparsity": sparsity, "optimizers": opts})
  (d / "compare.png").write_bytes(b"\x89PNG")


def _chance(results: Path, task: str, accuracy: float) -> None:
  _write(results / "chance" / "chance.json",
         {"tasks": {task: {"0": {"accuracy": accuracy}, "1": {"accuracy": accuracy}}}})


# ------------------------------------------------------------------------------------ verdicts

@pytest.mark.parametrize("diffs, testable, expected", [
    ([1.0, 0.5], True, V.HELD),
    ([1.0, -0.5], True, V.MIXED),     # mean 0.25 > 0, one seed against
    ([0.5, -1.0], True, V.NOT_HELD),  # mean -0.25
    ([0.0], True, V.NOT_HELD),        # no difference is not "loses less"
    # one dev sentence of 872 each way (77.87 - 77.75, 77.87 - 77.98): the mean is zero
    ([(679 - 678) * 100 / 872, (679 - 680) * 100 / 872 + 1e-14], True, V.NOT_HELD),
    ([2.0], False, V.NOT_TESTABLE),
    ([], True, V.NO_DATA),
])
def test_verdict(diffs, testable, expected):
  assert verdict(diffs, testable) == expected


def test_above_chance_uses_the_levels_margin():
  assert V.above_chance([52.0, 53.9], V.ChanceLevel(51.9))       # mean 52.95 > 51.9 + 1
  assert not V.above_chance([52.0, 53.7], V.ChanceLevel(51.9))   # mean 52.85
  assert not V.above_chance([55.0], V.ChanceLevel(50.0, 5.0))
  assert V.above_chance([10.0], None)             # no chance level known: testable


def test_seed_testable_and_collapsed():
  level = V.ChanceLevel(62.0, 4.0)                 # a model must score above 66
  assert V.seed_testable([75.0, 70.0], [64.0, 67.0], level)
  assert not V.seed_testable([75.0, 63.8], [62.0, 62.0], level)   # SAM at chance before
  assert not V.seed_testable([75.0, 75.0], [62.0, 62.0], level)   # both collapse after
  assert V.seed_testable([75.0, 75.0], [62.0, 62.0], None)        # no level known
  assert V.collapsed([75.0, 75.0], [62.0, 62.0], level)
  assert not V.collapsed([75.0, 63.8], [62.0, 62.0], level)       # SAM never learned
  assert not V.collapsed([75.0, 75.0], [62.0, 67.0], level)       # SAM's survives
  assert not V.collapsed([75.0, 75.0], [62.0, 62.0], None)


def test_verdict_by_seed_counts_only_testable_seeds():
  assert V.verdict_by_seed([2.0, -5.0], [True, False]) == V.HELD
  assert V.verdict_by_seed([2.0, -5.0], [True, True]) == V.NOT_HELD
  assert V.verdict_by_seed([2.0, 1.0], [False, False]) == V.NOT_TESTABLE
  assert V.verdict_by_seed([], []) == V.NO_DATA


def test_sampling_margin_is_two_binomial_standard_errors():
  # p = 0.5, n = 500: 2 * sqrt(0.25 / 500) = 0.044721 -> 4.47 points
  assert V.sampling_margin(50.0, 500) == pytest.approx(4.4721, abs=1e-4)
  # p = 0.68, n = 408 (MRPC's dev set): 2 * sqrt(0.2176 / 408) = 0.046188
  assert V.sampling_margin(68.0, 408) == pytest.approx(4.6188, abs=1e-4)
  assert V.sampling_margin(50.0, 10**6) == 1.0    # never below the least margin


def test_chance_level_takes_the_margin_of_its_dev_sample(tmp_path):
  _write(tmp_path / "chance" / "chance.json", {"tasks": {"qnli": {
      "0": {"examples": 500, "accuracy": 50.0}, "1": {"examples": 100, "accuracy": 52.0}}}})
  chance = sections.Chance(tmp_path)
  assert chance.level("qnli", "validation/accuracy", [0]) == pytest.approx((50.0, 4.4721), abs=1e-4)
  # both seeds: the mean score, the larger margin (2 * sqrt(0.52 * 0.48 / 100) = 0.09992)
  assert chance.level("qnli", "accuracy") == pytest.approx((51.0, 9.992), abs=1e-3)
  assert chance.level("mnli", "accuracy") is None


def test_chance_level_uses_a_recorded_margin(tmp_path):
  # SQuAD's position prior records its own margin (an F1 has no binomial one).
  _write(tmp_path / "chance" / "chance.json", {"tasks": {"squad": {
      "0": {"examples": 200, "f1": 9.0, "margin": 2.0},
      "1": {"examples": 200, "f1": 11.0, "margin": 3.0}}}})
  chance = sections.Chance(tmp_path)
  assert chance.level("squad", "validation/f1", [0]) == (9.0, 2.0)
  assert chance.level("squad", "f1") == (10.0, 3.0)


def test_fmt_seeds_and_transition():
  assert V.fmt_seeds([80.0, 79.0]) == "79.50 (80.00, 79.00)"
  assert V.fmt_seeds([1.234]) == "1.23"
  assert V.fmt_transition([80.0, 78.0], [77.0, 76.0]) == "79.00 → 76.50 (-2.50)"


# ------------------------------------------------------------------------------- IMP and int8

def test_imp_and_int8_sections_by_hand(tmp_path):
  # seed 0: Adam 80 -> 77 (drop 3), SAM 79 -> 78 (drop 1): SAM loses 2 less.
  # seed 1: Adam 81 -> 80 (drop 1), SAM 80 -> 78.5 (drop 1.5): SAM loses 0.5 more.
  # mean 0.75 > 0 with one seed against: mixed.
  _compare(tmp_path, "sst2", 0, dict(full=80, imp=77, oneshot=70, int8=79),
           dict(full=79, imp=78, oneshot=74, int8=78.5))
  _compare(tmp_path, "sst2", 1, dict(full=81, imp=80, oneshot=75, int8=80),
           dict(full=80, imp=78.5, oneshot=76, int8=79.8))
  _chance(tmp_path, "sst2", 50.9)
  imp = sections.imp_section(tmp_path)
  [finding] = imp.findings
  assert finding.verdict == V.MIXED
  assert "0.75" in finding.flatjax
  assert finding.paper == "Adam 92.7 → 91.7, SAM 93.1 → 93.2"
  row = imp.table[1]
  assert row[0] == "SST-2" and row[1] == "60%"
  assert row[3] == "80.50 → 78.50 (-2.00)"   # Adam: means 80.5 -> 78.5
  assert row[5] == "0.75 (2.00, -0.50)"
  # int8: Adam drops 1 and 1, SAM 0.5 and 0.2: SAM loses 0.5 and 0.8 less -> held.
  [int8] = sections.int8_section(tmp_path).findings
  assert int8.verdict == V.HELD and "0.65" in int8.flatjax
  # one-shot: Adam drops 10 and 6, SAM 5 and 4: SAM loses 5 and 2 less -> held.
  [oneshot] = sections.oneshot_section(tmp_path).findings
  assert oneshot.verdict == V.HELD and "3.50" in oneshot.flatjax


def test_models_at_chance_are_not_testable(tmp_path):
  _compare(tmp_path, "rte", 0, dict(full=53.0, imp=47.0, oneshot=47.0, int8=53.0),
           dict(full=60.0, imp=59.0, oneshot=58.0, int8=59.0))
  _chance(tmp_path, "rte", 52.7)   # Adam's 53.0 is within a point of always "entailment"
  [finding] = sections.imp_section(tmp_path).findings
  assert finding.verdict == V.NOT_TESTABLE


def test_int8_uses_the_papers_metric_when_measured(tmp_path):
  _compare(tmp_path, "mrpc", 0, dict(full=70, imp=69, oneshot=68, int8=69),
           dict(full=71, imp=70, oneshot=69, int8=70))
  d = tmp_path / "compare_mrpc" / "seed0"
  # F1 (Table 8's MRPC metric): Adam 85 -> 80 (drop 5), SAM 86 -> 85 (drop 1) -> 4 less.
  for opt, (b, a) in {"adam": (85.0, 80.0), "sam": (86.0, 85.0)}.items():
    q = _quantize(70.0, 69.0)
    q["float32"]["validation"]["f1"] = b
    q["int8"]["dynamic"]["metrics"]["validation"]["f1"] = a
    _write(d / opt / "quantize.json", q)
  [finding] = sections.int8_section(tmp_path).findings
  assert finding.setting == "MRPC f1 (compare)"
  assert "4.00" in finding.flatjax and finding.verdict == V.HELD
  assert finding.paper.startswith("Adam 89.57 → 86.81")


# --------------------------------------------------------------------------- tickets sections

def _tickets(folder: Path, rows: dict, task="sst2", sparsity=0.6) -> None:
  _write(folder / "tickets.json", {"train": TRAIN | {"task": task}, "sparsity": sparsity})
  _write_jsonl(folder / "tickets.jsonl", [
      {"mask": m, "optimizer": o, "metric": v, "sparsity": sparsity}
      for (m, o), v in rows.items()])


def test_table6_by_hand(tmp_path):
  _tickets(tmp_path / "table6_sst2" / "seed0", {
      ("adam", "adam"): 77.0, ("adam", "sam"): 76.0, ("sam", "adam"): 78.0,
      ("sam", "sam"): 75.0, ("random", "adam"): 70.0, ("random", "sam"): 77.0})
  sec = sections.table6_section(tmp_path)
  by_claim = {f.claim: f for f in sec.findings}
  assert by_claim["Table 6: SAM mask beats Adam mask (fine-tuned with adam)"].verdict == V.HELD
  assert by_claim["Table 6: SAM mask beats Adam mask (fine-tuned with sam)"].verdict == V.NOT_HELD
  # weaker IMP mask - random: adam column min(77, 78) - 70 = 7, sam column min(76, 75) - 77 = -2
  random = by_claim["Table 6: IMP masks beat a random mask"]
  assert random.verdict == V.MIXED and "2.50 (7.00, -2.00)" in random.flatjax
  assert ["SST-2 (60%)", "sam", "92.4 / 92.9", "78.00", "75.00", "1"] in sec.table


def test_transfer_heatmap(tmp_path):
  _tickets(tmp_path / "transfer" / "seed0" / "mrpc", {("sst2-adam", "adam"): 70.0,
                                           ("sst2-sam", "adam"): 72.5}, task="mrpc")
  _tickets(tmp_path / "transfer" / "seed0" / "sst2", {("mrpc-adam", "adam"): 80.0,
                                           ("mrpc-sam", "adam"): 79.0}, task="sst2")
  sec, heat = sections.transfer_section(tmp_path)
  assert heat == {"sst2": {"mrpc": 2.5}, "mrpc": {"sst2": -1.0}}
  [finding] = sec.findings
  assert finding.verdict == V.MIXED and "1 of 2 positive" in finding.flatjax
  sections_ = build_sections(tmp_path, tmp_path / "none.jsonl")
  assert (tmp_path / "transfer" / "heatmap.png").stat().st_size > 1000
  assert ("SAM ticket − Adam ticket", "transfer/heatmap.png") in sections_[3].plots


def _qnli_to_sst2_transfer(results: Path) -> None:
  """QNLI's 70% tickets fine-tuned on SST-2: SAM - Adam = +3 on seed 0, -1 on seed 1."""
  for seed, (adam, sam) in enumerate([(70.0, 73.0), (72.0, 71.0)]):
    _tickets(results / "transfer" / f"seed{seed}" / "sst2",
             {("qnli-adam", "adam"): adam, ("qnli-sam", "adam"): sam}, sparsity=0.7)


def test_transfer_over_two_seeds_averages_each_pair(tmp_path):
  # seed 0: SAM - Adam = +3 on QNLI -> SST-2; seed 1: -1. Mean +1, one seed against: mixed.
  _qnli_to_sst2_transfer(tmp_path)
  # The diagonal comes from Table 6 of the same seeds: (78 - 77 + 80 - 76) / 2 = 2.5.
  _tickets(tmp_path / "table6_qnli" / "seed0", {("adam", "adam"): 77.0, ("sam", "adam"): 78.0})
  _tickets(tmp_path / "table6_qnli" / "seed1", {("adam", "adam"): 76.0, ("sam", "adam"): 80.0})
  sec, heat = sections.transfer_section(tmp_path)
  assert heat == {"qnli": {"sst2": 1.0, "qnli": 2.5}}
  [finding] = sec.findings
  assert finding.verdict == V.MIXED and "1 of 2 positive" in finding.flatjax
  assert ["QNLI → SST-2", "70%", "71.00 (70.00, 72.00)", "72.00 (73.00, 71.00)",
          "1.00 (3.00, -1.00)", "–", "0, 1"] in sec.table


def test_transfer_reads_masks_from_runs_with_another_sam_radius(tmp_path):
  # transfer/: QNLI's rho-0.05 tickets, whose SAM compare model is at chance (53 against
  # 51 +- 4.5): not counted. transfer_rho0.02/: the rho-0.02 run's tickets, both compare models
  # above chance: SAM - Adam = +2 and +1, counted on their own row.
  _qnli_to_sst2_transfer(tmp_path)
  for seed, (adam, sam) in enumerate([(70.0, 72.0), (72.0, 73.0)]):
    _tickets(tmp_path / "transfer_rho0.02" / f"seed{seed}" / "sst2",
             {("qnli_rho0.02-adam", "adam"): adam, ("qnli_rho0.02-sam", "adam"): sam},
             sparsity=0.7)
    _compare(tmp_path, "qnli", seed, dict(full=66, imp=60, oneshot=54, int8=65),
             dict(full=53, imp=52, oneshot=52, int8=53))
    _compare(tmp_path, "qnli_rho0.02", seed, dict(full=66, imp=60, oneshot=54, int8=65),
             dict(full=62, imp=58, oneshot=52, int8=61))
  _write(tmp_path / "chance" / "chance.json", {"tasks": {
      "qnli": {s: {"examples": 500, "accuracy": 51.0} for s in ("0", "1")},
      "sst2": {s: {"examples": 872, "accuracy": 50.9} for s in ("0", "1")}}})
  sec, heat = sections.transfer_section(tmp_path)
  assert heat == {"qnli": {"sst2": 1.0}, "qnli_rho0.02": {"sst2": 1.5}}
  [finding] = sec.findings
  assert finding.verdict == V.HELD and "2 of 2 positive" in finding.flatjax
  assert "2 of 4 task pair × seeds testable" == finding.setting
  assert ["QNLI (SAM ρ 0.02) → SST-2", "70%", "71.00 (70.00, 72.00)", "72.50 (72.00, 73.00)",
          "1.50 (2.00, 1.00)", "50.9 ± 3.4", "0, 1"] in sec.table
  assert sec.folders == ["transfer", "transfer_rho0.02"]
  assert render.plot_transfer(heat, tmp_path / "heatmap.png").stat().st_size > 1000


def test_imp_verdict_leaves_out_seeds_at_chance(tmp_path):
  # QQP-like, majority label 62.0 +- 4.0. seed 0: both fine-tuned models learn and SAM loses
  # 3 less (Adam 75 -> 70, SAM 74 -> 72). seed 1: SAM's model stays at 63 (chance), so its
  # drop difference (Adam 75 -> 74.5: 0.5; SAM 63 -> 62: 1; -> -0.5) does not count: counted,
  # it would make the verdict mixed. One-shot: seed 0's compressed models both collapse to 62.
  _compare(tmp_path, "qqp", 0, dict(full=75, imp=70, oneshot=62, int8=75),
           dict(full=74, imp=72, oneshot=62, int8=74))
  _compare(tmp_path, "qqp", 1, dict(full=75, imp=74.5, oneshot=62, int8=75),
           dict(full=63, imp=62, oneshot=62, int8=63))
  _write(tmp_path / "chance" / "chance.json", {"tasks": {"qqp": {
      str(seed): {"accuracy": 62.0, "margin": 4.0} for seed in (0, 1)}}})
  sec = sections.imp_section(tmp_path)
  [finding] = sec.findings
  assert finding.verdict == V.HELD and "1.25 (3.00, -0.50) (2 seeds; counted: seed 0)" in finding.flatjax
  assert any("QQP: seed 1 not counted" in n for n in sec.notes)
  # one-shot: seed 0 collapses (both 62), seed 1 has SAM at chance: nothing to count.
  oneshot = sections.oneshot_section(tmp_path)
  assert oneshot.findings[0].verdict == V.NOT_TESTABLE
  assert any("fall to the majority label" in n and "(seed 0)" in n for n in oneshot.notes)
  assert any("QQP: seed 1 not counted" in n for n in oneshot.notes)



def test_oneshot_is_compared_at_the_end_of_the_papers_range(tmp_path):
  # QQP's reference sparsity is 90%, where both one-shot models collapse to the majority label
  # (62); the paper's claim covers 5%..60%. At 60%: Adam 75 -> 70 (5), SAM 74 -> 72 (2): SAM
  # loses 3 less. MRPC's curve stops at its 50% reference: compared there (4 vs 1: 3 less).
  curve_a = {0.0: 75.0, 0.3: 74.0, 0.6: 70.0, 0.7: 66.0, 0.9: 62.0}
  curve_s = {0.0: 74.0, 0.3: 74.0, 0.6: 72.0, 0.7: 68.0, 0.9: 62.0}
  _compare(tmp_path, "qqp", 0, dict(full=75, imp=62, oneshot=62, int8=75, curve=curve_a),
           dict(full=74, imp=62, oneshot=62, int8=74, curve=curve_s), sparsity=0.9)
  _compare(tmp_path, "mrpc", 0, dict(full=80, imp=79, oneshot=76, int8=80),
           dict(full=80, imp=79, oneshot=79, int8=80), sparsity=0.5)
  _write(tmp_path / "chance" / "chance.json", {"tasks": {
      "qqp": {"0": {"accuracy": 62.0, "margin": 4.0}},
      "mrpc": {"0": {"accuracy": 68.0, "margin": 4.0}}}})
  section = sections.oneshot_section(tmp_path)
  found = {f.setting: f for f in section.findings}
  assert set(found) == {"QQP 60%", "MRPC 50%"}
  assert found["QQP 60%"].verdict == V.HELD and "3.00" in found["QQP 60%"].flatjax
  assert "75.00 → 70.00 (-5.00)" in found["QQP 60%"].flatjax
  assert found["MRPC 50%"].verdict == V.HELD and "3.00" in found["MRPC 50%"].flatjax
  # IMP still reads the reference sparsity: both tickets at the majority label there.
  imp = {f.setting: f for f in sections.imp_section(tmp_path).findings}
  assert imp["QQP 90%"].verdict == V.NOT_TESTABLE


def test_each_seed_is_judged_against_its_own_dev_samples_chance(tmp_path):
  # MNLI-like: the majority label scores 35.8 on seed 0's dev sample and 39.0 on seed 1's
  # (500 rows: margins 200*sqrt(p(1-p)/500) = 4.29 and 4.36). Seed 1's one-shot SAM model
  # at 42.0 is above the pooled level (37.4 + 4.36 = 41.76) but within its own seed's
  # (43.36), and Adam's 37.2 is within both: seed 1 must not count. Seed 0 collapses.
  for seed, (a_after, s_after) in ((0, (36.0, 37.0)), (1, (37.2, 42.0))):
    _compare(tmp_path, "mnli", seed, dict(full=49, imp=46, oneshot=a_after, int8=49),
             dict(full=48, imp=47, oneshot=s_after, int8=48))
  _write(tmp_path / "chance" / "chance.json", {"tasks": {"mnli": {
      "0": {"accuracy": 35.8, "examples": 500}, "1": {"accuracy": 39.0, "examples": 500}}}})
  [finding] = sections.oneshot_section(tmp_path).findings
  assert finding.verdict == V.NOT_TESTABLE
  # With seed 1's SAM model at 44.0, above its own level, seed 1 counts: SAM loses 6.8 less.
  _compare(tmp_path, "mnli", 1, dict(full=49, imp=46, oneshot=37.2, int8=49),
           dict(full=48, imp=47, oneshot=44.0, int8=48))
  [finding] = sections.oneshot_section(tmp_path).findings
  assert finding.verdict == V.HELD and "counted: seed 1" in finding.flatjax

def test_int8_f1_counts_a_seed_only_if_its_accuracy_is_above_chance(tmp_path):
  # QQP's majority label is "not duplicate": its F1 is 0, so an F1 of 12 clears it even for a
  # model at the majority label's accuracy (63.8 against 62.0 +- 4.0), as seed 1's SAM here.
  # seed 0: F1 Adam 70 -> 69 (1), SAM 68 -> 67.5 (0.5): +0.5. seed 1: Adam 70 -> 69 (1),
  # SAM 12 -> 9 (3): -2, not counted. Counted alone, seed 0 holds.
  for seed, sam_acc, sam_f1 in ((0, (74.0, 73.8), (68.0, 67.5)), (1, (63.8, 63.6), (12.0, 9.0))):
    _compare(tmp_path, "qqp", seed, dict(full=75, imp=70, oneshot=70, int8=75),
             dict(full=sam_acc[0], imp=70, oneshot=70, int8=sam_acc[1]))
    d = tmp_path / "compare_qqp" / f"seed{seed}"
    for name, acc, f1 in (("adam", (75.0, 74.5), (70.0, 69.0)), ("sam", sam_acc, sam_f1)):
      _write(d / name / "quantize.json", {
          "float32": {"validation": {"accuracy": acc[0], "f1": f1[0]}},
          "int8": {"dynamic": {"metrics": {"validation": {"accuracy": acc[1], "f1": f1[1]}}}}})
  _write(tmp_path / "chance" / "chance.json", {"tasks": {"qqp": {
      str(seed): {"examples": 500, "accuracy": 62.0, "f1": 0.0, "margin": 4.0}
      for seed in (0, 1)}}})
  [int8] = sections.int8_section(tmp_path).findings
  assert "f1" in int8.setting
  assert int8.verdict == V.HELD and "-0.75 (0.50, -2.00) (2 seeds; counted: seed 0)" in int8.flatjax


def test_transfer_leaves_out_masks_of_a_source_model_at_chance(tmp_path):
  # QNLI seed 0: SAM's compare model at 53 (majority 51 +- 4.5): its mask found nothing, so
  # the QNLI -> SST-2 pair of seed 0 (+3) is not counted; seed 1's (-1) is: did not hold.
  _qnli_to_sst2_transfer(tmp_path)
  _compare(tmp_path, "qnli", 0, dict(full=66, imp=60, oneshot=54, int8=65),
           dict(full=53, imp=52, oneshot=52, int8=53))
  _compare(tmp_path, "qnli", 1, dict(full=70, imp=60, oneshot=54, int8=65),
           dict(full=68, imp=52, oneshot=52, int8=53))
  _write(tmp_path / "chance" / "chance.json", {"tasks": {
      "qnli": {s: {"examples": 500, "accuracy": 51.0} for s in ("0", "1")},
      "sst2": {s: {"examples": 872, "accuracy": 50.9} for s in ("0", "1")}}})
  sec, heat = sections.transfer_section(tmp_path)
  assert heat == {"qnli": {"sst2": 1.0}}        # the heatmap still shows every seed
  [finding] = sec.findings
  assert finding.verdict == V.NOT_HELD and "0 of 1 positive" in finding.flatjax
  assert "1 of 2 task pair × seeds testable" == finding.setting
  assert any("QNLI → SST-2 (seed 0)" in n and "source" in n for n in sec.notes)
  # every pair left out: not testable (not "no data")
  _compare(tmp_path, "qnli", 1, dict(full=70, imp=60, oneshot=54, int8=65),
           dict(full=52, imp=52, oneshot=52, int8=53))
  [left_out] = sections.transfer_section(tmp_path)[0].findings
  assert left_out.verdict == V.NOT_TESTABLE
  assert "uncounted SAM − Adam 1.00 (3.00, -1.00)" in left_out.flatjax


def test_a_compare_run_with_another_rho_is_its_own_row_with_its_tasks_references(tmp_path):
  # compare_qnli_rho0.02/: QNLI's paper numbers and chance level (51 +- 4.5), its own row.
  _compare(tmp_path, "qnli", 0, dict(full=66, imp=60, oneshot=54, int8=65),
           dict(full=53, imp=52, oneshot=52, int8=53))
  _compare(tmp_path, "qnli_rho0.02", 0, dict(full=66, imp=60, oneshot=54, int8=65),
           dict(full=63, imp=61, oneshot=55, int8=62))
  _write(tmp_path / "chance" / "chance.json", {"tasks": {"qnli": {
      "0": {"examples": 500, "accuracy": 51.0}}}})
  by_setting = {f.setting: f for f in sections.imp_section(tmp_path).findings}
  assert by_setting["QNLI 60%"].verdict == V.NOT_TESTABLE           # SAM at 53: chance
  varied = by_setting["QNLI (SAM ρ 0.02) 60%"]
  # Adam drops 6, SAM 2: +4, with QNLI's Table 5 numbers beside it
  assert varied.verdict == V.HELD and varied.paper == "Adam 91.5 → 88.6, SAM 91.3 → 89.6"
  [int8] = [f for f in sections.int8_section(tmp_path).findings if "ρ" in f.setting]
  assert int8.verdict == V.NOT_HELD                                 # Adam -1, SAM -1: 0


# ------------------------------------------------------------------------ the written report

def test_report_covers_every_item_and_says_what_is_missing(tmp_path):
  _compare(tmp_path, "sst2", 0, dict(full=80, imp=77, oneshot=70, int8=79),
           dict(full=79, imp=78, oneshot=74, int8=78.5))
  (tmp_path / "finetune_sst2").mkdir()
  (tmp_path / "finetune_sst2" / "README.md").write_text(
      "# Fine-tuning curves\n\nMade by `bash experiments/finetune_sst2.sh`.\n")
  text = build_report(tmp_path, tmp_path / "none.jsonl")
  for key in ("imp", "std", "table6", "transfer", "oneshot", "cofi", "int8", "sharpness",
              "swa", "movement", "variants", "h200"):
    assert f'<a id="{key}"></a>' in text
  assert text.count("not run yet") == 9      # all but IMP, one-shot and int8 (compare only)
  assert "Adam 92.70 → 91.17, SAM 93.08 → 92.39" in text       # Table 8, SST-2
  assert "![SST-2, seed 0](compare_sst2/seed0/compare.png)" in text
  assert ("- [`finetune_sst2/`](finetune_sst2/README.md): Fine-tuning curves — "
          "`bash experiments/finetune_sst2.sh`") in text


def test_python_m_paper_writes_the_readme(tmp_path, capsys):
  _compare(tmp_path, "sst2", 0, dict(full=80, imp=77, oneshot=70, int8=79),
           dict(full=79, imp=78, oneshot=74, int8=78.5))
  assert paper_main(["--results", str(tmp_path)]) == 0
  assert "## Scoreboard" in (tmp_path / "README.md").read_text()
  assert paper_main(["--results", str(tmp_path / "missing")]) == 2
  assert "does not exist" in capsys.readouterr().err


def test_paper_numbers_match_the_papers_tables():
  # Spot checks against ../shared/paper.md, typed independently of paper/numbers.py.
  assert paper.TABLE5["imp"]["sam"]["rte"] == 71.8
  assert paper.TABLE5["std"]["adam"]["qqp"] == 88.1
  assert paper.TABLE6["mrpc"]["random"] == (70.8, 70.1)
  assert paper.TABLE8["squad"] == ("f1", (89.20, 80.13), (89.20, 84.92))
  assert paper.TABLE3["mrpc"] == (6.1, 7.0)
  assert paper.TABLE2["mnli"] == ((84.7, 80.2), (85.3, 80.6))


def test_committed_report_covers_every_item():
  """experiments/results/README.md, as committed, has data for every paper item."""
  results = ROOT / "experiments" / "results"
  secs = build_sections(results, plots=False)
  missing = [s.title for s in secs if not s.findings]
  assert not missing, f"no results for {missing}"
  for s in secs:
    for cmd in s.commands:
      script = cmd.split("bash ", 1)[-1].split()[0] if "bash " in cmd else None
      if script and script.startswith("experiments/"):
        assert (ROOT / script).is_file(), cmd


# ------------------------------------------------------- Std, sharpness, CoFi, SAM variants

def test_std_section_by_hand(tmp_path):
  for seed, (a, s) in enumerate([((80.0, 76.0), (79.0, 78.0)), ((81.0, 79.0), (80.0, 79.5))]):
    d = tmp_path / "std_sst2" / f"seed{seed}"
    for opt, (full, pruned) in (("adam", a), ("sam", s)):
      _write(d / opt / "imp.json", {"train": TRAIN, "rate": 0.3, "rounds": 2, "mode": "std"})
      _write_jsonl(d / opt / "rounds.jsonl", [
          {"round": 0, "sparsity": 0.0, "metric": full, "metric_name": "validation/accuracy"},
          {"round": 1, "sparsity": 0.3, "metric": 0.0, "metric_name": "validation/accuracy"},
          {"round": 2, "sparsity": 0.6, "metric": pruned,
           "metric_name": "validation/accuracy"}])
  [finding] = sections.std_section(tmp_path).findings
  # drops: Adam 4 and 2, SAM 1 and 0.5 -> SAM loses 3 and 1.5 less
  assert finding.verdict == V.HELD and "2.25" in finding.flatjax
  assert finding.paper == "Adam 92.7 → 91.1, SAM 93.1 → 92.1"


def test_sharpness_over_seeds(tmp_path):
  def measure(eps1, eig):
    return {"task": "mrpc", "keskar": [{"epsilon": 1e-3, "sharpness": eps1}],
            "hessian_top_eigenvalue": {"eigenvalue": eig}, "sample": "128 train examples"}
  for seed, (a, s) in enumerate([((10.0, 50.0), (4.0, 60.0)), ((8.0, 40.0), (6.0, 20.0))]):
    d = tmp_path / "sharpness_compare" / "mrpc" / f"seed{seed}"
    _write(d / "adam" / "sharpness.json", measure(*a))
    _write(d / "sam" / "sharpness.json", measure(*s))
  found = {f.claim: f for f in sections.sharpness_section(tmp_path).findings}
  eps = found["SAM is flatter: ε-sharpness ×100, ε 0.001"]
  assert eps.verdict == V.HELD and eps.paper == "6.1 / 7.0"        # diffs 6 and 2
  assert found["SAM is flatter: Hessian top eigenvalue"].verdict == V.MIXED  # -10 and 20



def test_sharpness_of_the_cofi_teachers_over_seeds(tmp_path):
  def measure(eps1, trace):
    return {"task": "sst2", "keskar": [{"epsilon": 1e-3, "sharpness": eps1}],
            "hessian_trace": {"trace": trace}, "sample": "128 train examples"}
  for seed, (a, s) in enumerate([((300.0, 1100.0), (170.0, 600.0)),
                                 ((250.0, 900.0), (260.0, 500.0))]):
    d = tmp_path / "sharpness_sst2" / f"seed{seed}"
    _write(d / "adam" / "sharpness.json", measure(*a))
    _write(d / "sam" / "sharpness.json", measure(*s))
  # A folder without seeds (the layout before seed folders) is not read as a seed.
  _write(tmp_path / "sharpness_sst2" / "adam" / "sharpness.json", measure(1.0, 1.0))
  section = sections.sharpness_section(tmp_path)
  found = {f.claim: f for f in section.findings}
  eps = found["SAM is flatter: ε-sharpness ×100, ε 0.001"]
  assert eps.verdict == V.MIXED                 # diffs 130 and -10
  assert eps.paper == "4.5 / 2.2" and "2 seeds" in eps.setting
  assert found["SAM is flatter: Hessian trace"].verdict == V.HELD   # 500 and 400
  assert section.folders == ["sharpness_sst2"]

def _cofi_seed(results: Path, run: str, seed: int, adam: tuple, sam: tuple) -> None:
  for opt, (teacher, pruned) in (("adam", adam), ("sam", sam)):
    _write(results / "cofi_sst2" / run / f"seed{seed}" / opt / "results.json", {
        "task": "sst2", "main_metric": "validation/accuracy", "target_sparsity": 0.8,
        "sparsity": 0.83, "teacher": {"validation/accuracy": teacher},
        "pruned": {"validation/accuracy": pruned}})


def test_cofi_section(tmp_path):
  _cofi_seed(tmp_path, "run1", 0, (84.0, 81.0), (85.0, 80.0))
  [finding] = sections.cofi_section(tmp_path).findings
  assert finding.verdict == V.NOT_HELD          # Adam loses 3, SAM 5
  assert finding.paper == "Adam 92.7 → 90.2, SAM 93.1 → 91.3"


def test_cofi_section_over_seeds(tmp_path):
  _chance(tmp_path, "sst2", 50.0)               # majority label 50, the least margin
  _cofi_seed(tmp_path, "run1", 0, (84.0, 81.0), (85.0, 80.0))   # SAM loses 2 more
  _cofi_seed(tmp_path, "run1", 1, (84.0, 76.0), (85.0, 83.0))   # SAM loses 6 less
  # Both students at the majority label: the difference of drops says nothing.
  _cofi_seed(tmp_path, "run1", 2, (84.0, 50.0), (85.0, 50.0))
  sec = sections.cofi_section(tmp_path)
  [finding] = sec.findings
  assert finding.verdict == V.MIXED             # seeds 0 and 1: -2 and +6, mean +2
  assert "counted: seeds 0, 1" in finding.flatjax and "3 seeds" in finding.flatjax
  assert [row[1] for row in sec.table[1:]] == ["0", "1", "2"]
  assert any("run1" in n and "seed 2 not counted" in n for n in sec.notes)


def test_variants_cost_and_compressibility(tmp_path):
  overhead = tmp_path / "sam_overhead.jsonl"
  _write_jsonl(overhead, [{"ratio_to_adam": {"adam": 1.0, "sam": 1.8, "looksam": 1.2}}])
  d = tmp_path / "variants_sst2" / "seed0"
  rows = []
  for label, dense, pruned in (("adam", 80.0, 75.0), ("sam", 79.0, 76.0),
                               ("looksam", 81.0, 79.0), ("looksam-alpha0.1", 80.0, 77.5)):
    rows += [{"label": label, "target_sparsity": 0.0, "metric": dense},
             {"label": label, "target_sparsity": 0.6, "metric": pruned}]
    _write(d / label / "quantize.json", _quantize(dense, dense - 1.0))
  _write_jsonl(d / "oneshot.jsonl", rows)
  sec, points = sections.variants_section(tmp_path, overhead)
  found = {f.claim: f for f in sec.findings}
  assert found["looksam loses less than Adam (oneshot)"].verdict == V.HELD   # 5 vs 2
  assert found["looksam loses less than Adam (int8)"].verdict == V.NOT_HELD  # 1 vs 1
  assert {(p["optimizer"], p["cost"], p["oneshot_drop"]) for p in points} == {
      ("adam", 1.0, 5.0), ("sam", 1.8, 3.0), ("looksam", 1.2, 2.0),
      ("looksam-alpha0.1", 1.2, 2.5)}   # a LookSAM run with other settings costs LookSAM's step
  assert ["looksam", "1.20", "81.00", "2.00", "1.00", "1"] in sec.table


def test_transfer_pairs_at_the_targets_chance_are_not_counted(tmp_path):
  _tickets(tmp_path / "transfer" / "seed0" / "mrpc", {("sst2-adam", "adam"): 68.0,
                                           ("sst2-sam", "adam"): 68.4}, task="mrpc")
  _tickets(tmp_path / "transfer" / "seed0" / "sst2", {("mrpc-adam", "adam"): 80.0,
                                           ("mrpc-sam", "adam"): 79.0}, task="sst2")
  _chance(tmp_path, "mrpc", 68.38)      # MRPC's majority label: the SST-2 -> MRPC pair says nothing
  sec, _ = sections.transfer_section(tmp_path)
  [finding] = sec.findings
  assert finding.verdict == V.NOT_HELD and "0 of 1 positive" in finding.flatjax
  assert any("SST-2 → MRPC" in n for n in sec.notes)


def test_task_names_of_variant_folders():
  assert paper.base_task("qnli_rho0.02") == "qnli" and paper.base_task("sst2") == "sst2"
  assert paper.task_label("qnli_rho0.02") == "QNLI (SAM ρ 0.02)"
  assert paper.task_label("mnli") == "MNLI"
  # The paper's order (MNLI, QQP, QNLI, ...), a variant right after its task.
  names = ["sst2", "qnli_rho0.02", "mnli", "qnli", "unknown"]
  assert sorted(names, key=paper.task_rank) == ["mnli", "qnli", "qnli_rho0.02", "sst2",
                                                 "unknown"]
