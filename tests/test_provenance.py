"""flatjax.provenance's record of the machine and the code: a run.json's device in a few
words, the CPU's vector instruction set (int8 scores depend on it), and the git state."""

import subprocess

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
