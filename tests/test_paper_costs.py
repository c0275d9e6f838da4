"""paper.costs: the variants' cost-vs-compressibility table from hand-made rows and a
hand-made benchmark row with known numbers."""

from __future__ import annotations

import json

from paper import costs
from paper.__main__ import build

LABELS = "01" * 10


def _model(seed, optimizer, wrong_oneshot, wrong_int8, setting=None, rho=None):
  """A model right on all 20 dev examples, then wrong on the first ``wrong_*`` of them (5
  points each)."""
  ids = {"task": "sst2", "seed": seed, "optimizer": optimizer, "rho": rho, "setting": setting,
         "metric": "validation/accuracy", "revision": "abcdef0"}
  rows = [{**ids, "compression": "none", "sparsity": 0.0, "score": 100.0,
           "labels": LABELS, "predictions": LABELS}]
  for compression, wrong in (("oneshot", wrong_oneshot), ("int8", wrong_int8)):
    rows.append({**ids, "compression": compression, "sparsity": 0.6 if compression == "oneshot"
                 else None, "score": 100.0 - 5 * wrong, "base": 100.0,
                 "predictions": "".join("10"[int(y)] for y in LABELS[:wrong]) + LABELS[wrong:]})
  return rows


BENCHMARK = {"benchmark": "sam_overhead", "time": "2026-12-05T11:20:04", "cpu_cores": 2,
             "ratio_to_adam": {"adam": 1.0, "sam": 1.75, "looksam": 1.12, "msam": 0.98},
             "latesam_run_ratio_to_adam": 1.12}


def _rows():
  rows = []
  for seed in (0, 1):
    rows += _model(seed, "adam", 10, 2)
    rows += _model(seed, "sam", 0, 1, rho=0.05)
    rows += _model(seed, "looksam", 10, 0, setting="alpha0.1", rho=0.05)
    rows += _model(seed, "latesam", 3, 2, rho=0.05)
  return rows


def test_the_table_gives_each_models_cost_drops_and_intervals():
  lines = costs.table(_rows(), BENCHMARK, [["adam", "looksam/alpha0.1"], ["adam", "latesam"]])
  by = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in lines[2:]}
  assert list(by) == ["adam", "sam ρ 0.05", "looksam ρ 0.05 (alpha0.1)", "latesam ρ 0.05"]
  # Adam loses 10 and 2 examples of 20: 50 and 10 points.
  assert by["adam"][1:5] == ["1.00", "100.00", "+50.00", "+10.00"]
  assert by["sam ρ 0.05"][1:5] == ["1.75", "100.00", "+0.00", "+5.00"]
  # A setting costs what its optimizer's step does; late-phase SAM's cost is over a run.
  assert by["looksam ρ 0.05 (alpha0.1)"][1:5] == ["1.12", "100.00", "+50.00", "+0.00"]
  assert by["latesam ρ 0.05"][1:5] == ["1.12", "100.00", "+15.00", "+10.00"]
  # SAM keeps the 10 examples Adam's one-shot model loses, on both seeds: 50 points better,
  # far above zero; LookSAM's one-shot model loses the same examples as Adam's: exactly 0.
  # Adam's one-shot model, right on 10 of 20, sits at the majority label: the note says so.
  assert by["sam ρ 0.05"][5].startswith("+50.00 [+") and by["sam ρ 0.05"][5].endswith(
      "] **held**; adam compressed within 2 SE of the majority label (50.0%)")
  assert by["looksam ρ 0.05 (alpha0.1)"][5] == (
      "+0.00 [+0.00, +0.00] **undecided**; adam compressed, looksam@0.05/alpha0.1 compressed "
      "within 2 SE of the majority label (50.0%)")
  assert costs.step_cost(BENCHMARK, "asam@0.5") is None


def test_the_report_has_the_table_where_both_inputs_exist(tmp_path):
  results = tmp_path / "results"
  (results / "variants").mkdir(parents=True)
  (results / "variants" / "results.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in _rows()))
  benchmark = tmp_path / "sam_overhead_cpu.jsonl"
  benchmark.write_text(json.dumps({**BENCHMARK, "time": "old"}) + "\n" + json.dumps(BENCHMARK)
                       + "\n")
  assert costs.last_benchmark(benchmark)["time"] == BENCHMARK["time"]
  report = build(results, benchmark)
  assert "## What each SAM variant costs and buys" in report and "| adam | 1.00 |" in report
  assert "costs and buys" not in build(results, tmp_path / "none.jsonl")
