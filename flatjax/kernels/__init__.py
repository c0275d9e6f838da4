"""Native CPU kernels behind XLA FFI custom calls, where XLA:CPU is slow.

Products XLA:CPU compiles poorly on the 2-core AVX-512 machines flatjax is
developed on: the int8 x int8 dot under PyTorch's dynamic int8 recipe (1.3-1.5x
its float32 rate where FBGEMM gets 3.0-3.4x, ``benchmarks/int8_matmul.py``) and
the attention's context product ``probs @ v`` in BERT's layouts (~9 billion
multiply-adds a second).
Each kernel computes exactly what the XLA path computes, rounding included, so
a result does not depend on which path ran:

* :mod:`flatjax.kernels.int8`: a quantized dense layer (``int8_dense.cc``);
* :mod:`flatjax.kernels.attention`: the attention's context product (``attention.cc``).

The C++ sources ship with the package and are compiled together on first use
with the system's C++ compiler (``$CXX``, else ``c++``) against jaxlib's FFI
headers, into ``~/.cache/flatjax/kernels`` (``$FLATJAX_CACHE``), once per
source, jaxlib and compiler. Where they cannot be (no compiler, a CPU without
AVX-512 VNNI, not x86-64 Linux) or ``FLATJAX_KERNELS=xla``, flatjax runs the
XLA path; where JAX's default backend is a GPU or TPU it always does (and a
computation lowered for one never calls them).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jaxlib

HERE = Path(__file__).parent
SOURCES = ("int8_dense.cc", "attention.cc", "support.cc")
HEADERS = ("parallel.h",)
#: XLA custom-call target -> the handler symbol the library exports.
TARGETS = {"flatjax_int8_dense": "FlatjaxInt8Dense",
           "flatjax_int8_dense_gelu": "FlatjaxInt8DenseGelu",
           "flatjax_attention_context": "FlatjaxAttentionContext"}
#: ``FLATJAX_KERNELS=xla`` keeps every computation on XLA's own ops.
KERNELS_ENV = "FLATJAX_KERNELS"
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-mavx512f", "-mavx512bw", "-mavx512dq",
         "-mavx512vl", "-mavx512vnni", "-ffp-contract=off")


def cache_dir() -> Path:
  root = os.environ.get("FLATJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                         "flatjax")
  return Path(root) / "kernels"


def _compiler() -> str:
  return os.environ.get("CXX", "c++")


def _library_path(compiler: str) -> Path:
  version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                           check=True).stdout
  parts = [(HERE / name).read_bytes() for name in SOURCES + HEADERS]
  parts += [s.encode() for s in (jax.ffi.include_dir(), jaxlib.__version__, version, *FLAGS)]
  key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
  return cache_dir() / f"flatjax-kernels-{key}.so"


def build() -> Path:
  """Compiles the kernels unless a build of these sources is cached; its path.

  Raises ``OSError`` or ``subprocess.CalledProcessError`` when it cannot.
  """
  compiler = _compiler()
  path = _library_path(compiler)
  if path.exists():
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  # A private name, then an atomic rename: processes building at once never
  # load a half-written library.
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
  os.close(fd)
  try:
    subprocess.run([compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", f"-I{HERE}",
                    *(str(HERE / name) for name in SOURCES), "-o", tmp],
                   check=True, capture_output=True, text=True)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return path


@functools.cache
def _load() -> str | None:
  """Registers the kernels with XLA; None when they run here, else why not."""
  if os.environ.get(KERNELS_ENV, "native") == "xla":
    return f"{KERNELS_ENV}=xla"
  if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
    return "flatjax's kernels are for x86-64 Linux"
  if not hasattr(jax, "ffi") or not hasattr(jax.ffi, "include_dir"):
    return f"jax {jax.__version__} has no jax.ffi to call them with"
  try:
    library = ctypes.CDLL(str(build()))
  except subprocess.CalledProcessError as e:
    return f"compiling flatjax's kernels failed: {(e.stderr or '').strip()[-500:]}"
  except OSError as e:
    return f"no C++ compiler or cache to build flatjax's kernels: {e}"
  if not library.FlatjaxKernelsSupported():
    return "this CPU has no AVX-512 VNNI"
  for target, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                platform="cpu")
  return None


def unavailable_reason() -> str | None:
  """Why the XLA paths run here, None when the kernels do."""
  return _load()


def require() -> None:
  if (reason := _load()) is not None:
    raise RuntimeError(f"flatjax's native kernels do not run here: {reason}")


_xla_only = False


@contextlib.contextmanager
def xla_only():
  """Within it, computations traced run on XLA's ops (tests, benchmarks).

  Only traces made inside it: a function ``jax.jit`` has traced before keeps
  its first trace.
  """
  global _xla_only
  previous, _xla_only = _xla_only, True
  try:
    yield
  finally:
    _xla_only = previous


def enabled() -> bool:
  """Whether a computation traced now calls the kernels: JAX's default backend is
  the CPU and they run on it. (A GPU or TPU host never builds them.)"""
  return not _xla_only and jax.default_backend() == "cpu" and _load() is None
