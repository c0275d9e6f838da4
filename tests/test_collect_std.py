"""experiments/collect_std.py on a hand-made ``flatjax imp --mode std`` folder with known
numbers, laid out as the std item's step writes it (one IMP run per optimizer in
RUN/OPTIMIZER), and the item's config: its step is a valid command line writing there, and
its claim reads the rows."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import collect, run as runner
from flatjax import cli
from paper import claims

#: (round, target sparsity, best dev accuracy) per optimizer.
ROUNDS = {"adam": [(0, 0.0, 80.0), (1, 0.3, 79.0), (2, 0.6, 76.0)],
          "sam": [(0, 0.0, 79.0), (1, 0.3, 80.5), (2, 0.6, 78.5)]}
LABELS = "0110"
PREDICTIONS = {("adam", 0): "0110", ("adam", 2): "0100", ("sam", 0): "0111", ("sam", 2): "0110"}


def _write(path: Path, value) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value) if not isinstance(value, list)
                  else "".join(json.dumps(r) + "\n" for r in value))


def _imp_run(run: Path, optimizer: str, settings: dict) -> None:
  """What ``flatjax imp`` leaves in RUN/OPTIMIZER: imp.json, rounds.jsonl, run.json and
  each round's folder, whose best/ model kept its dev predictions."""
  _write(run / "imp.json", {
      "train": {"data": {"task": "sst2", "max_train_examples": 1000},
                "run": {"output": str(run), "seed": 1, "epochs": 2.0, "keep_best": True},
                "model": {"name": "minilm"},
                "optimizer": {"name": optimizer, "learning_rate": 1e-4, "settings": settings},
                "pruning": {"mask": None, "method": None}},
      "mode": "std", "rate": 0.3, "rounds": 2, "granularity": "global", "scope": "encoder",
      "method": "magnitude", "tolerance": 1.0})
  metric = "validation/accuracy"
  _write(run / "rounds.jsonl", [
      {"round": r, "target_sparsity": s, "sparsity": s + 1e-8, "metric": m, "metric_name": metric,
       "best": {"step": 64, metric: m}, "final": {metric: m - 0.5},
       "before_retraining": None if r == 0 else {metric: m - 3}, "steps": 64}
      for r, s, m in ROUNDS[optimizer]])
  _write(run / "run.json", {"flatjax": {"revision": "abcdef1234", "dirty": False},
                            "resumed": []})
  for (opt, r), predicted in PREDICTIONS.items():
    if opt == optimizer:
      _write(run / f"round_{r:02d}" / "best" / "predictions.json",
             {"validation": {"labels": LABELS, "predictions": predicted}})
  _write(run / "ticket.json", {"task": "sst2", "full": ROUNDS[optimizer][0][2]})


def _hand_made(folder: Path) -> None:
  _imp_run(folder / "adam", "adam", {})
  _imp_run(folder / "sam", "sam", {"rho": 0.02})
  (folder / "summary.md").write_text("| sparsity | adam (std) | sam (std) |\n")
  (folder / "imp.png").write_bytes(b"\x89PNG")


def test_std_rows_from_a_hand_made_run(tmp_path):
  _hand_made(tmp_path)
  rows = collect.collect({"collect": "std", "scale": "tiny"}, tmp_path)
  by = {(r["optimizer"], r["compression"], r["sparsity"]): r for r in rows}
  assert len(rows) == 2 * 3      # dense, the 30% round and the 60% target each
  assert {(r["task"], r["seed"], r["scale"], r["revision"]) for r in rows} == {
      ("sst2", 1, "tiny", "abcdef1")}
  dense = by[("sam", "none", 0.0)]
  assert (dense["rho"], dense["score"], dense["labels"], dense["predictions"]) == (
      0.02, 79.0, LABELS, "0111")
  assert by[("adam", "none", 0.0)]["rho"] is None
  adam = by[("adam", "std", 0.6)]
  assert (adam["score"], adam["base"], adam["predictions"]) == (76.0, 80.0, "0100")
  assert (by[("sam", "std", 0.6)]["score"], by[("sam", "std", 0.6)]["base"]) == (78.5, 79.0)
  # The round between is a curve point: no base, so summaries and claims read the target.
  assert by[("sam", "std", 0.3)]["score"] == 80.5
  assert "base" not in by[("sam", "std", 0.3)] and "predictions" not in by[("sam", "std", 0.3)]


def test_the_std_claim_reads_the_rows(tmp_path):
  _hand_made(tmp_path)
  config = runner.load_config("std")
  rows = collect.collect(config, tmp_path)
  [claim] = claims.claims("std", rows, config["claims"])
  assert (claim.compression, claim.kind, claim.reference, claim.candidate) == (
      "std", "drop", "adam", "sam ρ 0.02")
  assert (claim.reference_value, claim.candidate_value) == (4.0, 0.5)
  assert claim.interval is not None          # every model kept its predictions


def test_the_std_step_is_an_imp_command_writing_where_the_collector_reads(tmp_path):
  config = runner.load_config("std")
  [step] = config["steps"]
  argv = runner.step_argv(step, "sst2", 0, tmp_path / "SST-2", tmp_path / "sst2-seed0")
  command, values = cli.parse(argv)
  assert command == "imp" and values["optimizers"] == ("adam", "sam")
  assert values["run"]["output"] == str(tmp_path / "sst2-seed0")   # imp adds OPTIMIZER/
  assert (values["imp"]["mode"], values["imp"]["rate"], values["imp"]["rounds"]) == (
      "std", 0.3, 2)
  assert values["data"]["max_train_examples"] == 1000 and values["run"]["keep_best"]
