"""experiments/collect_sharpness.py on a hand-made sharpness run folder with known numbers, laid
out as the sharpness item's steps write it (RUN/SOURCE/OPT by ``flatjax sharpness``, each
measuring a ``flatjax train`` run of the cofi or the compare item), and the item's config:
its steps read the models where those items' steps write them."""

from __future__ import annotations

import json
from pathlib import Path

from experiments import collect, run as runner, summary
from flatjax import cli

#: (source, optimizer) -> (epsilon-sharpness at 1e-3 and 5e-3, top eigenvalue, trace or None)
MEASURED = {("cofi-teacher", "adam"): ((333.5, 601.75), 226.5, (1165.5, 95.0)),
            ("cofi-teacher", "sam"): ((177.0, 353.75), 61.25, (633.5, 56.0)),
            ("compare", "adam"): ((239.25, 444.75), 285.75, None),
            ("compare", "sam"): ((106.0, 249.5), 73.75, None)}

#: The 1-D loss surface the cofi-teacher runs drew (alphas, losses): the mean loss minus the
#: loss at alpha 0 is 2.95 / 5 - 0.25 for Adam, 1.76 / 5 - 0.25 for SAM.
SURFACES = {"adam": ([-1.0, -0.5, 0.0, 0.5, 1.0], [0.9, 0.4, 0.25, 0.3, 1.1]),
            "sam": ([-1.0, -0.5, 0.0, 0.5, 1.0], [0.5, 0.3, 0.25, 0.26, 0.45])}


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


def _sharpness(out: Path, model: Path, optimizer: str, measured: tuple,
               surface: tuple | None = None) -> None:
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
  if surface:
    results["surface_1d"] = {"alphas": surface[0], "losses": surface[1]}
  _write(out / "sharpness.json", results)
  _write(out / "run.json", {"flatjax": {"revision": "fedcba9876", "dirty": True},
                            "resumed": []})


def _hand_made_run(tmp_path: Path) -> Path:
  run = tmp_path / "sharpness" / "sst2-seed1"
  for (source, optimizer), measured in MEASURED.items():
    model = tmp_path / "models" / source / optimizer
    _model(model, optimizer, seed=1)
    _sharpness(run / source / optimizer, model, optimizer, measured,
               SURFACES[optimizer] if source == "cofi-teacher" else None)
  return run


def test_sharpness_rows_from_a_hand_made_run(tmp_path):
  run = _hand_made_run(tmp_path)
  rows = collect.collect({"collect": "sharpness", "scale": "tiny"}, run)
  by = {(r["setting"], r["optimizer"], r["metric"]): r for r in rows}
  # The compare models were measured without a trace or a surface.
  assert len(rows) == 2 * 5 + 2 * 3
  assert {(r["task"], r["seed"], r["scale"], r["revision"], r["compression"], r["sparsity"],
           r["loss"]) for r in rows} == {("sst2", 1, "tiny", "fedcba9-dirty", "none", 0.0, 0.25)}
  assert {r["metric"] for r in rows} == {
      "sharpness/epsilon_0.001", "sharpness/epsilon_0.005", "sharpness/hessian_top_eigenvalue",
      "sharpness/hessian_trace", "sharpness/surface_1d_rise"}
  for (source, optimizer), ((eps1, eps5), top, trace) in MEASURED.items():
    assert by[(source, optimizer, "sharpness/epsilon_0.001")]["score"] == eps1
    assert by[(source, optimizer, "sharpness/epsilon_0.005")]["score"] == eps5
    assert by[(source, optimizer, "sharpness/hessian_top_eigenvalue")]["score"] == top
  trace = by[("cofi-teacher", "sam", "sharpness/hessian_trace")]
  assert (trace["score"], trace["stderr"], trace["rho"]) == (633.5, 56.0, 0.1)
  assert by[("compare", "adam", "sharpness/hessian_top_eigenvalue")]["converged"] is True
  assert {r["rho"] for r in rows if r["optimizer"] == "adam"} == {None}
  assert ("compare", "sam", "sharpness/hessian_trace") not in by
  for optimizer, rise in (("adam", 0.34), ("sam", 0.102)):
    surface = by[("cofi-teacher", optimizer, "sharpness/surface_1d_rise")]
    assert abs(surface["score"] - rise) < 1e-12
    assert surface["curve"] == dict(zip(("alphas", "losses"), SURFACES[optimizer]))
  assert ("compare", "adam", "sharpness/surface_1d_rise") not in by


def test_the_summary_draws_the_surfaces_the_rows_carry(tmp_path):
  run = _hand_made_run(tmp_path)
  rows = collect.collect({"collect": "sharpness", "scale": "tiny"}, run)
  config = runner.load_config("sharpness")
  out = summary.write(config, rows, tmp_path / "with")
  assert (out / "sharpness.png").read_bytes()[:4] == b"\x89PNG"
  assert "![curves](sharpness.png)" in (out / "README.md").read_text()
  flat = [{k: v for k, v in r.items() if k != "curve"} for r in rows]
  out = summary.write(config, flat, tmp_path / "without")
  assert not (out / "sharpness.png").exists()
  assert "sharpness.png" not in (out / "README.md").read_text()


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
