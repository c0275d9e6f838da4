"""``run.json``: what made a run folder — its settings, command line, code and data.

Every driver writes one when it creates its folder, and adds an entry to its
``resumed`` list each time the run is continued, so a result can always be
traced to the revision of flatjax, the library versions and the exact data
files that produced it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from flatjax import files

RUN_FILE = "run.json"
# Distributions whose versions decide a run's numbers.
DISTRIBUTIONS = ("flatjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
                 "transformers", "tokenizers", "numpy")
# What a benchmark compares flatjax with besides.
BENCHMARKED = ("torch", "onnx", "onnxruntime")
_CHUNK = 1 << 20


def versions(distributions: Sequence[str] = DISTRIBUTIONS) -> dict[str, str | None]:
  """Installed version of each of ``distributions`` (None if missing), and Python's."""
  out: dict[str, str | None] = {}
  for name in distributions:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  out["python"] = sys.version.split()[0]
  return out


def git_state(where: str | os.PathLike | None = None,
              ignore: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
  """``{"revision": sha or None, "dirty": bool or None}`` of the git checkout
  holding ``where`` (default: flatjax's own source). None where it is not a
  checkout (an installed wheel) or git is missing. Untracked files do not make
  a checkout dirty; changes to tracked ones do, except to the files ``ignore``
  names (a benchmark's own results file, which its previous run appended to)."""
  where = Path(where or Path(__file__).resolve().parent)
  def git(*args: str) -> str | None:
    try:
      done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                            timeout=30)
    except (OSError, subprocess.TimeoutExpired):
      return None
    return done.stdout.strip() if done.returncode == 0 else None
  revision = git("rev-parse", "HEAD")
  if revision is None:
    return {"revision": None, "dirty": None}
  top = Path(git("rev-parse", "--show-toplevel") or where).resolve()
  resolved = [Path(p).resolve() for p in ignore]
  excluded = [f":(top,exclude){p.relative_to(top)}" for p in resolved if p.is_relative_to(top)]
  status = git("status", "--porcelain", "--untracked-files=no", "--", ":/", *excluded)
  return {"revision": revision, "dirty": None if status is None else bool(status)}


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
  del size, mtime_ns  # the cache key: a changed file is read again
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
  """sha256 of a file's bytes."""
  st = os.stat(path)
  return _file_digest(os.fspath(path), st.st_size, st.st_mtime_ns)


def fingerprint(source: str | os.PathLike | None) -> dict[str, Any] | None:
  """What a data argument pointed at: a file's sha256 and size; for a folder, every
  file under it (relative name -> sha256) and one sha256 over them all; a hub
  name (nothing on disk) is recorded as such; None stays None."""
  if source is None:
    return None
  path = Path(os.path.expanduser(os.fspath(source)))
  if path.is_file():
    return {"path": str(path.resolve()), "sha256": file_digest(path),
            "bytes": path.stat().st_size}
  if path.is_dir():
    files = {str(p.relative_to(path)): file_digest(p)
             for p in sorted(path.rglob("*")) if p.is_file()}
    combined = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"path": str(path.resolve()), "sha256": combined, "files": files}
  return {"hub": str(source)}


def _jsonable(config: Any) -> Any:
  if dataclasses.is_dataclass(config) and not isinstance(config, type):
    config = dataclasses.asdict(config)
  return json.loads(json.dumps(config, default=str))


_command: list[str] | None = None


@contextlib.contextmanager
def command(argv: list[str]):
  """Runs written inside record ``argv`` as their command line instead of
  ``sys.argv`` (the CLI's ``main(argv)`` may be called in-process, where
  ``sys.argv`` is another program's)."""
  global _command
  previous, _command = _command, list(argv)
  try:
    yield
  finally:
    _command = previous


def _invocation() -> dict[str, Any]:
  return {"argv": list(sys.argv if _command is None else _command), "cwd": os.getcwd(),
          "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "flatjax": git_state()}


#: x86 vector instruction sets, best first: XLA's CPU code (its exp, tanh, erf, reductions)
#: differs between them in the last bits, which int8 quantization's rounding can turn into
#: other predictions, so an int8 score is reproducible on the same set only.
_ISAS = ("avx512_vnni", "avx512f", "avx2", "avx", "sse4_2")


@functools.lru_cache(maxsize=1)
def cpu() -> dict[str, Any]:
  """The host CPU: ``{"model", "isa", "xla_flags"}`` (``isa``: the best vector set in
  :data:`_ISAS` the CPU has, or the architecture off x86; ``xla_flags``: ``XLA_FLAGS``,
  which may cap it with ``--xla_cpu_max_isa``)."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      key, _, value = line.partition(":")
      if key.strip() == "model name":
        model = value.strip()
      elif key.strip() == "flags":
        flags = set(value.split())
  except OSError:
    pass
  isa = next((name for name in _ISAS if name in flags), platform.machine())
  return {"model": model, "isa": isa, "xla_flags": os.environ.get("XLA_FLAGS")}


def machine(run: dict[str, Any]) -> str | None:
  """A run.json's device in a few words (``"cpu: AMD EPYC, avx512_vnni"``), None for a
  run recorded before CPUs were."""
  device = run.get("device") or {}
  host = device.get("cpu")
  if device.get("platform") != "cpu":
    return device.get("kind") if device else None
  if not host:
    return None
  capped = f", XLA_FLAGS {host['xla_flags']}" if host.get("xla_flags") else ""
  return f"cpu: {host['model']}, {host['isa']}{capped}"


def record(config: Any, data: dict[str, Any] | None = None) -> dict[str, Any]:
  """The contents of a new run's ``run.json``: ``config`` (a dataclass or a
  JSON-able dict, stored resolved), the command line, flatjax's git revision and
  dirty flag, library versions, the device, and a fingerprint of each entry of
  ``data`` (name -> path or hub name)."""
  import jax
  return {"config": _jsonable(config), **_invocation(), "versions": versions(),
          "device": {"platform": jax.default_backend(), "kind": jax.devices()[0].device_kind,
                     "count": jax.device_count(), "processes": jax.process_count(),
                     "cpu": cpu()},
          "data": {name: fingerprint(src) for name, src in (data or {}).items()},
          "resumed": []}


def benchmark_row(name: str, output: str | os.PathLike,
                  fields: dict[str, Any]) -> dict[str, Any]:
  """One line of a benchmark's results file ``output``: the benchmark's name, when and how
  it ran (UTC time, command line), flatjax's revision and dirty flag (``output`` itself left
  out: the previous run appended to it), the versions of flatjax's libraries and of what it
  is compared with, the host (CPU, cores, platform, 1-minute load average), then
  ``fields``, the benchmark's own settings and timings, which may not reuse those names."""
  row = {"benchmark": name,
         "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
         "command": " ".join(["python", *sys.argv]),
         "git": git_state(ignore=[output]),
         "versions": versions(DISTRIBUTIONS + BENCHMARKED),
         "cpu": cpu(), "cpu_cores": len(os.sched_getaffinity(0)),
         "platform": platform.platform(), "load_average_1m": os.getloadavg()[0]}
  clash = sorted(row.keys() & fields.keys())
  if clash:
    raise ValueError(f"benchmark fields reuse the row's own keys: {', '.join(clash)}")
  return {**row, **fields}


def contention() -> str | None:
  """A warning when the 1-minute load average exceeds this process's cores (other
  processes compete, so timings are noisy), else None."""
  load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
  if load <= cores + 0.5:
    return None
  return f"warning: load average {load:.1f} on {cores} cores: other processes compete, " \
         "timings are noisy"


def changed_inputs(folder: str | os.PathLike, data: dict[str, Any]) -> list[str]:
  """The names in ``data`` whose files differ from what ``folder/run.json``
  recorded when the run began (nothing when it has no run.json)."""
  path = Path(folder) / RUN_FILE
  if not path.is_file():
    return []
  recorded = json.loads(path.read_text()).get("data", {})
  changed = []
  for name, source in data.items():
    before, now = recorded.get(name), fingerprint(source)
    if name in recorded and (before or {}).get("sha256") != (now or {}).get("sha256"):
      changed.append(f"{name} ({source})")
  return changed


def write_run_json(folder: str | os.PathLike, config: Any, data: dict[str, Any] | None = None,
                   *, resumed: bool = False) -> Path:
  """Writes ``folder/run.json`` for a new run; for a ``resumed`` one that has it,
  adds this invocation (command line, time, revision) to its ``resumed`` list.
  On several hosts only the first one writes."""
  import jax
  path = Path(folder) / RUN_FILE
  if jax.process_index() != 0:
    return path
  if resumed and path.exists():
    run = json.loads(path.read_text())
    run.setdefault("resumed", []).append(_invocation())
  else:
    run = record(config, data)
  files.write_json(path, run)
  return path
