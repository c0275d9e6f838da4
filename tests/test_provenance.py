"""flatjax.provenance's record of the machine and the code: a run.json's device in a few
words, the CPU's vector instruction set (int8 scores depend on it), and the git state."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from flatjax import provenance


def test_machine_names_the_cpu_and_its_instruction_set():
  cpu = {"platform": "cpu", "kind": "cpu", "cpu": {"model": "AMD EPYC", "isa": "avx512_vnni",
                                                   "xla_flags": None}}
  assert provenance.machine({"device": cpu}) == "cpu: AMD EPYC, avx512_vnni"
  capped = {**cpu, "cpu": {**cpu["cpu"], "xla_flags": "--xla_cpu_max_isa=AVX2"}}
  assert provenance.machine({"device": capped}).endswith("XLA_FLAGS --xla_cpu_max_isa=AVX2")
  assert provenance.machine({"device": {"platform": "gpu", "kind": "NVIDIA H200"}}) == \
      "NVIDIA H200"
  assert provenance.machine({"device": {"platform": "cpu", "kind": "cpu"}}) is None   # older
  assert provenance.machine({}) is None


def test_this_cpu_is_described():
  import platform
  found = provenance.cpu()
  assert found["model"] and found["isa"] in (*provenance._ISAS, platform.machine())


def test_git_state_is_dirty_for_changed_tracked_files_except_ignored_ones(tmp_path):
  """A repository made here: a commit, then an untracked file (clean), a changed
  results file (dirty, unless ignored), a changed source file (dirty either way)."""
  def git(*args):
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True)
  (tmp_path / "results").mkdir()
  (tmp_path / "results" / "bench.jsonl").write_text("{}\n")
  (tmp_path / "code.py").write_text("x = 1\n")
  git("init", "-q")
  git("add", ".")
  git("commit", "-qm", "first")
  head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                        text=True, check=True).stdout.strip()
  (tmp_path / "new.txt").write_text("untracked\n")
  assert provenance.git_state(tmp_path) == {"revision": head, "dirty": False}
  results = tmp_path / "results" / "bench.jsonl"
  results.write_text("{}\n{}\n")
  assert provenance.git_state(tmp_path)["dirty"] is True
  # Asked from a subfolder, with the file named relative to this process's directory.
  assert provenance.git_state(tmp_path / "results", ignore=[results])["dirty"] is False
  (tmp_path / "code.py").write_text("x = 2\n")
  assert provenance.git_state(tmp_path, ignore=[results])["dirty"] is True


def test_git_state_is_none_outside_a_checkout(tmp_path):
  assert provenance.git_state(tmp_path) == {"revision": None, "dirty": None}


def test_git_state_ignores_a_file_outside_the_checkout(tmp_path):
  repo, outside = tmp_path / "repo", tmp_path / "elsewhere.jsonl"
  repo.mkdir()
  (repo / "a.txt").write_text("a\n")
  for args in (("init", "-q"), ("add", "."), ("commit", "-qm", "first")):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)
  assert provenance.git_state(repo, ignore=[outside])["dirty"] is False


def test_benchmark_row_says_what_made_it_then_the_benchmarks_fields(tmp_path, monkeypatch):
  import torch
  monkeypatch.setattr(provenance.sys, "argv", ["benchmarks/x.py", "--repeats", "3"])
  source = Path(provenance.__file__).parent
  done = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                        text=True)
  head = done.stdout.strip() if done.returncode == 0 else None
  row = provenance.benchmark_row("x", tmp_path / "x.jsonl", {"seconds": 0.5})
  assert row["benchmark"] == "x" and row["command"] == "python benchmarks/x.py --repeats 3"
  assert row["git"]["revision"] == head
  assert row["versions"]["torch"] == torch.__version__
  assert row["cpu"] == provenance.cpu() and row["cpu_cores"] == len(os.sched_getaffinity(0))
  assert row["time"].endswith("+00:00") and row["seconds"] == 0.5
  assert list(row)[-1] == "seconds"
  json.dumps(row)
  with pytest.raises(ValueError, match="cpu_cores"):
    provenance.benchmark_row("x", tmp_path / "x.jsonl", {"cpu_cores": 4})


def test_contention_warns_when_the_load_exceeds_the_cores(monkeypatch):
  monkeypatch.setattr(provenance.os, "sched_getaffinity", lambda pid: {0, 1})
  monkeypatch.setattr(provenance.os, "getloadavg", lambda: (2.4, 0.0, 0.0))
  assert provenance.contention() is None
  monkeypatch.setattr(provenance.os, "getloadavg", lambda: (3.6, 0.0, 0.0))
  assert provenance.contention().startswith("warning: load average 3.6 on 2 cores")
