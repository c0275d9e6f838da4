"""experiments/collect_tickets.py on a hand-made ``flatjax tickets`` run folder with known
numbers, laid out as the table6 and transfer items' steps write it (the grid in RUN, each
cell's ``flatjax train`` run in RUN/LABEL-OPTIMIZER), and the items' configs: their steps
take the compare items' IMP masks, and their score claims read the rows."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import collect, run as runner
from flatjax import cli
from paper import claims

LABELS = "0110"
METRIC = "validation/accuracy"
#: (mask label, optimizer) -> (best dev accuracy, its predictions; None: no best model kept)
CELLS = {("adam", "adam"): (77.5, "0111"), ("adam", "sam"): (77.75, "0110"),
         ("sam", "adam"): (78.0, "0100"), ("sam", "sam"): (78.25, "0110"),
         ("random", "adam"): (65.25, "1111"), ("random", "sam"): (54.0, None)}


def _write(path: Path, value) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value) if not isinstance(value, list)
                  else "".join(json.dumps(r) + "\n" for r in value))


def _grid(run: Path, seed: int, cells: dict = CELLS, task: str = "sst2",
          mask_task: str = "sst2") -> None:
  """What ``flatjax tickets --output RUN`` leaves: tickets.json, run.json, tickets.jsonl,
  tickets.md, masks/ and each cell's run folder (its best model's dev predictions)."""
  _write(run / "tickets.json", {
      "train": {"data": {"task": task, "max_train_examples": 1000, "max_length": 128},
                "run": {"output": str(run), "seed": seed, "epochs": 2.0, "keep_best": True},
                "model": {"name": "minilm"},
                "optimizer": {"name": "adam", "learning_rate": 1e-4, "settings": {"rho": 0.1}},
                "pruning": {"mask": None, "method": None}},
      "masks": {label: f"masks/{label}.safetensors" for label, _ in cells if label != "random"},
      "optimizers": sorted({o for _, o in cells}), "random_like": "adam", "random_seed": seed})
  _write(run / "run.json", {"flatjax": {"revision": "0123456789", "dirty": False},
                            "resumed": [{"flatjax": {"revision": "0123456789", "dirty": False}}]})
  (run / "masks").mkdir()
  (run / "masks" / "random.safetensors").write_bytes(b"")
  rows = []
  for (label, optimizer), (score, predicted) in cells.items():
    cell = run / f"{label}-{optimizer}"
    _write(cell / "results.json", {"task": task, "optimizer": optimizer, "finished": True,
                                   "best": {"step": 64, METRIC: score}, "sparsity": 0.69999996})
    if predicted is not None:
      _write(cell / "best" / "predictions.json",
             {"validation": {"labels": LABELS, "predictions": predicted}})
    source = label.rpartition("-")[2]
    rows.append({"mask": label, "optimizer": optimizer, "task": task, "mask_task": mask_task,
                 "mask_optimizer": None if source == "random" else source,
                 "sparsity": 0.69999996, "metric": score, "metric_name": METRIC,
                 "best": {"step": 64, METRIC: score}, "final": {METRIC: score}, "steps": 64})
  _write(run / "tickets.jsonl", rows)
  (run / "tickets.md").write_text("| mask (found on) | sparsity | adam | sam |\n")


def test_ticket_rows_from_a_hand_made_run(tmp_path):
  _grid(tmp_path, seed=1)
  rows = collect.collect({"collect": "tickets", "scale": "tiny"}, tmp_path)
  by = {(r["optimizer"], r["setting"]): r for r in rows}
  assert len(rows) == len(CELLS)
  assert {(r["task"], r["seed"], r["scale"], r["revision"], r["compression"], r["sparsity"],
           r["metric"], r["mask_task"]) for r in rows} == {
      ("sst2", 1, "tiny", "0123456", "ticket", 0.7, METRIC, "sst2")}
  assert {(o, s.removesuffix("-mask")) for o, s in by} == {(o, m) for m, o in CELLS}
  sam = by[("sam", "sam-mask")]
  assert (sam["score"], sam["rho"], sam["mask_optimizer"]) == (78.25, 0.1, "sam")
  assert (sam["labels"], sam["predictions"]) == (LABELS, "0110")
  adam = by[("adam", "random-mask")]
  assert (adam["score"], adam["rho"], adam.get("mask_optimizer")) == (65.25, None, None)
  assert "predictions" not in by[("sam", "random-mask")]      # a cell without its best model
  assert all("base" not in r for r in rows)


def test_a_folder_of_grids_gives_each_grids_rows(tmp_path):
  _grid(tmp_path / "sst2", seed=0, cells={("qnli-adam", "adam"): (70.0, "0111"),
                                          ("qnli-sam", "adam"): (72.0, "0110")},
        mask_task="qnli")
  (tmp_path / "notes").mkdir()                 # a sub-folder without a grid is not read
  rows = collect.collect({"collect": "tickets", "scale": "tiny"}, tmp_path)
  assert [(r["setting"], r["score"], r["mask_task"], r["mask_optimizer"]) for r in rows] == [
      ("qnli-adam-mask", 70.0, "qnli", "adam"), ("qnli-sam-mask", 72.0, "qnli", "sam")]


def test_the_table6_claims_compare_the_masks_under_each_optimizer(tmp_path):
  config = runner.load_config("table6")
  rows = []
  for seed in (0, 1):
    _grid(tmp_path / str(seed), seed)
    rows += collect.collect(config, tmp_path / str(seed))
  found = claims.claims("table6", rows, config["claims"])
  assert [(c.reference, c.candidate, c.kind, c.seeds) for c in found] == [
      ("adam (adam-mask)", "adam (sam-mask)", "score", [0, 1]),
      ("sam ρ 0.1 (adam-mask)", "sam ρ 0.1 (sam-mask)", "score", [0, 1]),
      ("adam (random-mask)", "adam (adam-mask)", "score", [0, 1]),
      ("sam ρ 0.1 (random-mask)", "sam ρ 0.1 (adam-mask)", "score", [0, 1])]
  assert (found[0].reference_value, found[0].candidate_value) == (77.5, 78.0)
  assert found[0].interval is not None and found[3].interval is None   # one without predictions


def test_the_transfer_claim_reads_the_rho_002_mask(tmp_path):
  config = runner.load_config("transfer")
  cells = {("qnli-adam", "adam"): (70.0, "0111"), ("qnli-sam", "adam"): (72.0, "0110"),
           ("qnli_rho0.02-sam", "adam"): (70.5, "0100")}
  _grid(tmp_path, seed=0, cells=cells, mask_task="qnli")
  [claim] = claims.claims("transfer", collect.collect(config, tmp_path), config["claims"])
  assert (claim.reference, claim.candidate, claim.kind) == (
      "adam (qnli-adam-mask)", "adam (qnli_rho0.02-sam-mask)", "score")
  assert (claim.reference_value, claim.candidate_value) == (70.0, 70.5)


def _parsed(item: str, tmp_path: Path) -> tuple[Path, dict]:
  config = runner.load_config(item)
  run = tmp_path / "runs" / item / "sst2-seed1"
  [step] = config["steps"]
  command, values = cli.parse(runner.step_argv(step, "sst2", 1, tmp_path / "SST-2", run))
  assert (command, values["run"]["output"], values["run"]["seed"]) == ("tickets", str(run), 1)
  assert (values["data"]["max_train_examples"], values["data"]["max_length"]) == (1000, 128)
  assert values["run"]["keep_best"]           # each cell keeps its dev predictions
  return tmp_path / "runs", values


def test_the_table6_step_takes_the_compare_runs_masks(tmp_path):
  runs, values = _parsed("table6", tmp_path)
  compare = runs / "compare" / "sst2-seed1"
  assert values["tickets"]["masks"] == {"adam": str(compare / "adam" / "imp"),
                                        "sam": str(compare / "sam" / "imp")}
  assert (values["sparsity"], values["tickets"]["random_like"]) == (0.6, "adam")
  assert values["tickets"]["optimizers"] == ("adam", "sam")


def test_the_transfer_step_takes_qnlis_masks_at_70_percent(tmp_path):
  runs, values = _parsed("transfer", tmp_path)
  assert values["tickets"]["masks"] == {
      "qnli-adam": str(runs / "compare" / "qnli-seed1" / "adam" / "imp"),
      "qnli-sam": str(runs / "compare" / "qnli-seed1" / "sam" / "imp"),
      "qnli_rho0.02-sam": str(runs / "compare_rho0.02" / "qnli-seed1" / "sam" / "imp")}
  assert (values["sparsity"], values["tickets"]["optimizers"]) == (0.7, ("adam",))


def test_the_transfer_item_runs_sst2s_masks_on_qnli_at_60_percent(tmp_path):
  config = runner.load_config("transfer")
  run = tmp_path / "runs" / "transfer" / "qnli-seed0"
  [step] = runner.steps_for(config, "qnli")
  command, values = cli.parse(runner.step_argv(step, "qnli", 0, tmp_path / "qnli", run))
  compare = tmp_path / "runs" / "compare" / "sst2-seed0"
  assert values["tickets"]["masks"] == {"sst2-adam": str(compare / "adam" / "imp"),
                                        "sst2-sam": str(compare / "sam" / "imp")}
  # QNLI at the CPU size compare trains it at: 1,280 pairs at length 64, 500 dev rows.
  assert (values["data"]["max_train_examples"], values["data"]["max_length"],
          values["data"]["max_eval_examples"]) == (1280, 64, 500)
  assert (command, values["sparsity"], values["tickets"]["optimizers"]) == (
      "tickets", 0.6, ("adam",))
  assert runner.steps_for(config, "sst2") == config["steps"]
  _grid(run, seed=0, cells={("sst2-adam", "adam"): (53.25, "0111")}, task="qnli")
  _grid(tmp_path / "sst2", seed=0, cells={("qnli-adam", "adam"): (70.0, "0111")},
        mask_task="qnli")
  scales = {r["task"]: r["scale"] for path in (run, tmp_path / "sst2")
            for r in collect.collect(config, path)}
  assert scales["qnli"].startswith("MiniLM-L6, 1,280 QNLI pairs at length 64")
  assert scales["sst2"].startswith("MiniLM-L6, 1,000 SST-2 sentences at length 128")
