"""experiments/collect_sharpness.py on a hand-made sharpness run folder with known numbers, laid
out as the sharpness item's steps write it (RUN/SOURCE/OPT by ``flatjax sharpness``, each
measuring a ``flatjax train`` run of the cofi or the compare item), and the item's config:
its steps read the models where those items' steps write them."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import collect, run as runner
from flatjax import cli

#: (source, optimizer) -> (epsilon-sharpness at 1e-3 and 5e-3, top eigenvalue, trace or None)
MEASURED = {("cofi-teacher", "adam"): ((333.5, 601.75), 226.5, (1165.5, 95.0)),
            ("cofi-teacher", "sam"): ((177.0, 353.75), 61.25, (633.5, 56.0)),
            ("compare", "adam"): ((239.25, 444.75), 285.75, None),
            ("compare", "sam"): ((106.0, 249.5), 73.75, None)}


def _write(path: Path, value) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(value))


def _model(run: Path, optimizer: str, seed: int) -> None:
  """The ``config.json`` of the ``flatjax train`` run whose best model was measured."""
  _write(run / "config.json", {"config": {
      "data": {"task": "sst2", "max_length": 64}, "run": {"output": str(run), "seed": seed},
      "model": {"name": "minilm"},
      "optimizer": {"name": optimizer, "settings": {"rho": 0.1} if optimizer == "sam" else {}},
      "pruning": {"mask": None, "method": None}}})


def _sharpness(out: Path, model: Path, optimizer: str, measured: tuple) -> None:
  """What ``flatjax sharpness MODEL --output OUT`` leaves: sharpness.json and run.json."""
  (eps1, eps5), top, trace = measured
  results = {
      "run": str(model), "model": str(model / "best"), "task": "sst2", "optimizer": optimizer,
      "sample": {"split": "train", "examples": 128, "max_length": 64, "batch_size": 32},
      "num_params": 22713986, "config": {"run": str(model), "seed": 0, "maxiter": 10},
      "loss": 0.25,
      "keskar": [{"sharpness": s, "loss": 0.25, "max_loss": 4.0, "iterations": 10,
                  "epsilon": e} for e, s in ((0.001, eps1), (0.005, eps5))],
      "hessian_top_eigenvalue": {"eigenvalue": top, "iterations": 5, "converged": True,
                                 "residual": 0.3, "history": [top]},
      "seconds": 100.0}
  if trace:
    results["hessian_trace"] = {"trace": trace[0], "stderr": trace[1], "num_samples": 10}
  _write(out / "sharpness.json", results)
  _write(out / "run.json", {"flatjax": {"revision": "fedcba9876", "dirty": True},
                            "resumed": []})


def test_sharpness_rows_from_a_hand_made_run(tmp_path):
  run = tmp_path / "sharpness" / "sst2-seed1"
  for (source, optimizer), measured in MEASURED.items():
    model = tmp_path / "models" / source / optimizer
    _model(model, optimizer, seed=1)
    _sharpness(run / source / optimizer, model, optimizer, measured)
  rows = collect.collect({"collect": "sharpness", "scale": "tiny"}, run)
  by = {(r["setting"], r["optimizer"], r["metric"]): r for r in rows}
  assert len(rows) == 2 * 4 + 2 * 3     # the compare models were measured without a trace
  assert {(r["task"], r["seed"], r["scale"], r["revision"], r["compression"], r["sparsity"],
           r["loss"]) for r in rows} == {("sst2", 1, "tiny", "fedcba9-dirty", "none", 0.0, 0.25)}
  assert {r["metric"] for r in rows} == {
      "sharpness/epsilon_0.001", "sharpness/epsilon_0.005", "sharpness/hessian_top_eigenvalue",
      "sharpness/hessian_trace"}
  for (source, optimizer), ((eps1, eps5), top, trace) in MEASURED.items():
    assert by[(source, optimizer, "sharpness/epsilon_0.001")]["score"] == eps1
    assert by[(source, optimizer, "sharpness/epsilon_0.005")]["score"] == eps5
    assert by[(source, optimizer, "sharpness/hessian_top_eigenvalue")]["score"] == top
  trace = by[("cofi-teacher", "sam", "sharpness/hessian_trace")]
  assert (trace["score"], trace["stderr"], trace["rho"]) == (633.5, 56.0, 0.1)
  assert by[("compare", "adam", "sharpness/hessian_top_eigenvalue")]["converged"] is True
  assert {r["rho"] for r in rows if r["optimizer"] == "adam"} == {None}
  assert ("compare", "sam", "sharpness/hessian_trace") not in by


def test_the_sharpness_steps_measure_the_cofi_and_compare_items_models(tmp_path):
  runs = tmp_path / "runs"
  config = runner.load_config("sharpness")
  run = runs / "sharpness" / "sst2-seed0"
  parsed = [cli.parse(runner.step_argv(step, "sst2", 0, tmp_path / "SST-2", run))
            for step in config["steps"]]
  assert [c for c, _ in parsed] == ["sharpness"] * 4
  outputs = [Path(v["output"]).relative_to(run) for _, v in parsed]
  assert outputs == [Path("cofi-teacher/adam"), Path("cofi-teacher/sam"), Path("compare/adam"),
                     Path("compare/sam")]
  cofi = runner.load_config("cofi")
  teachers = [cli.parse(runner.step_argv(step, "sst2", 0, tmp_path / "SST-2",
                                         runs / "cofi" / "sst2-seed0"))[1]["run"]["output"]
              for step in cofi["steps"] if step[0] == "train"]
  compare = runs / "compare" / "sst2-seed0"
  assert [v["run"] for _, v in parsed] == teachers + [
      str(compare / "adam" / "imp" / "round_00"), str(compare / "sam" / "imp" / "round_00")]
  for _, values in parsed:
    assert (values["examples"], values["epsilons"], values["maxiter"]) == (
        128, (0.001, 0.005), 10)
  assert [v["hutchinson_samples"] for _, v in parsed] == [10, 10, 0, 0]
  assert config["claims"] == []
