"""experiments/collect_two_four.py on a hand-made two_four run folder (a 2:4 one-shot run of
the compare item's Adam and SAM models) with known numbers, and the claim its config asks."""

from __future__ import annotations

from experiments import collect, run as runner
from paper import claims
from test_collect_int8 import LABELS
from test_collect_swa import _compare, _oneshot

#: label -> (sparsity, score, predictions): dense, 3 of every 4 kept, 2:4. Scores: Adam
#: 80 -> 70, SAM 79 -> 77 (drops 10 and 2).
CURVES = {"adam": [(0.0, 80.0, LABELS), (0.25, 78.0, None), (0.5, 70.0, "01100000")],
          "sam": [(0.0, 79.0, "01100100"), (0.25, 78.5, None), (0.5, 77.0, "01000100")]}


def _hand_made(runs, seed):
  compare, run = runs / "compare" / f"sst2-seed{seed}", runs / "two_four" / f"sst2-seed{seed}"
  _compare(compare, "sst2", seed, 0.05, {"adam": (80.0, 79.0, "01100111"),
                                         "sam": (79.0, 78.75, "11100100")})
  _oneshot(run / "oneshot", "sst2", CURVES,
           {o: str(compare / o / "imp" / "round_00" / "best") for o in CURVES})
  return run


def test_two_four_rows_and_claim(tmp_path):
  config = runner.load_config("two_four")
  rows = []
  for seed in (0, 1):
    rows += collect.collect(config, _hand_made(tmp_path, seed))
  by = {(r["seed"], r["optimizer"], r["compression"], r["sparsity"]): r for r in rows}
  assert len(rows) == 2 * 2 * 3
  adam = by[(0, "adam", "2:4", 0.5)]
  assert (adam["score"], adam["base"], adam["predictions"]) == (70.0, 80.0, "01100000")
  assert by[(1, "sam", "2:4", 0.25)]["score"] == 78.5 and "base" not in by[(1, "sam", "2:4", 0.25)]
  assert by[(0, "sam", "none", 0.0)]["labels"] == LABELS
  (claim,) = [c for c in claims.claims("two_four", rows, config["claims"])
              if c.compression == "2:4"]
  assert (claim.reference_value, claim.candidate_value) == (10.0, 2.0)
  assert claim.seeds == [0, 1] and claim.interval is not None
  assert "one-shot 2:4: sam ρ 0.05 loses less than adam" in claims.markdown([claim])[-1]


def test_the_two_four_steps_run_oneshot_at_whole_2_4_steps():
  config = runner.load_config("two_four")
  (step,) = config["steps"]
  argv = runner.step_argv(step, "sst2", 0, None, runner.ROOT / "runs" / "two_four" / "sst2-seed0")
  assert argv[:1] == ["oneshot"] and argv[argv.index("--granularity") + 1] == "2:4"
  assert (argv[argv.index("--step") + 1], argv[argv.index("--max") + 1]) == ("0.25", "0.5")
  assert "--data" not in argv    # without a data root the step reads the hub
