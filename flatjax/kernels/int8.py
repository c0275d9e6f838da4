"""The int8 dense layer as a native CPU kernel (``int8_dense.cc``, an XLA FFI call).

XLA:CPU compiles an int8 x int8 -> int32 ``dot_general`` to about 1.1-1.6x
the speed of its float32 product on a 2-core AVX-512 VNNI CPU, where FBGEMM
(PyTorch's dynamic int8) gets 2.8-3.7x (``benchmarks/int8_matmul.py``). The
kernel multiplies uint8 activations by int8 weights with ``VPDPBUSD``, the
instruction FBGEMM uses, and quantizes each block of rows just before
multiplying it, so an int8 layer is one pass over its input. It computes
exactly the arithmetic of :func:`flatjax.quant.int8.dense`'s XLA path, float64
multiply-adds included: either path gives the same bits.

The C++ source ships with the package and is compiled on first use with the
system's C++ compiler (``$CXX``, else ``c++``) against jaxlib's FFI headers,
into ``~/.cache/flatjax/kernels`` (``$FLATJAX_CACHE``), once per source,
jaxlib and compiler. Where it cannot be (no compiler, a CPU without AVX-512
VNNI, not x86 Linux) or ``FLATJAX_INT8_KERNEL=xla``, flatjax uses the XLA
path; on GPUs and TPUs it always does (:func:`dense_or` picks per platform
when the computation is lowered).
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
from typing import Callable

import jax
import jax.numpy as jnp
import jaxlib

SOURCE = Path(__file__).with_name("int8_dense.cc")
TARGET = "flatjax_int8_dense"
#: ``FLATJAX_INT8_KERNEL=xla`` keeps int8 layers on XLA's integer dot.
KERNEL_ENV = "FLATJAX_INT8_KERNEL"
PANEL = 64  # output columns per packed weight panel (kPanel in the C++)
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-mavx512f", "-mavx512bw", "-mavx512dq",
         "-mavx512vl", "-mavx512vnni")


def cache_dir() -> Path:
  root = os.environ.get("FLATJAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                         "flatjax")
  return Path(root) / "kernels"


def _compiler() -> str:
  return os.environ.get("CXX", "c++")


def _library_path(compiler: str) -> Path:
  version = subprocess.run([compiler, "--version"], capture_output=True, text=True,
                           check=True).stdout
  key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), jax.ffi.include_dir().encode(),
                                   jaxlib.__version__.encode(), version.encode(),
                                   " ".join(FLAGS).encode()])).hexdigest()[:16]
  return cache_dir() / f"int8_dense-{key}.so"


def build() -> Path:
  """Compiles the kernel unless a build of this source is cached; its path.

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
    subprocess.run([compiler, *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp],
                   check=True, capture_output=True, text=True)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return path


@functools.cache
def _load() -> str | None:
  """Registers the kernel with XLA; None when it runs here, else why not."""
  if os.environ.get(KERNEL_ENV, "native") == "xla":
    return f"{KERNEL_ENV}=xla"
  if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
    return "the kernel is for x86-64 Linux"
  try:
    library = ctypes.CDLL(str(build()))
  except subprocess.CalledProcessError as e:
    return f"compiling int8_dense.cc failed: {(e.stderr or '').strip()[-500:]}"
  except OSError as e:
    return f"no C++ compiler or cache to build int8_dense.cc: {e}"
  if not library.FlatjaxInt8DenseSupported():
    return "this CPU has no AVX-512 VNNI"
  jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.FlatjaxInt8Dense),
                              platform="cpu")
  return None


def unavailable_reason() -> str | None:
  """Why int8 layers run on XLA's integer dot here, None when on the kernel."""
  return _load()


def available() -> bool:
  return _load() is None


def pack_weights(wq: jax.Array) -> jax.Array:
  """int8 ``[K, M]`` -> ``[ceil(M/64), ceil(K/4), 64, 4]``, zero-padded.

  Each 64-byte row holds four consecutive ``k`` of 16 output columns, the
  operand layout of ``VPDPBUSD``; a panel's 64 columns are contiguous over
  ``k``, so a register tile streams its weights in order.
  """
  k, m = wq.shape
  k_padded, m_padded = -(-k // 4) * 4, -(-m // PANEL) * PANEL
  w = jnp.pad(wq.astype(jnp.int8), ((0, k_padded - k), (0, m_padded - m)))
  return w.reshape(k_padded // 4, 4, m_padded // PANEL, PANEL).transpose(2, 0, 3, 1)


def int8_dense(x: jax.Array, inverse: jax.Array, zero_point: jax.Array, wq: jax.Array,
               multiplier: jax.Array, bias: jax.Array) -> jax.Array:
  """The kernel: ``x`` float32 ``[N, K]``, ``wq`` int8 ``[K, M]`` -> float32 ``[N, M]``.

  ``inverse`` (``1 / scale``) and ``zero_point`` are the activations' scalars,
  ``multiplier`` (``scale * weight scale``) and ``bias`` float32 ``[M]``.
  """
  if (reason := _load()) is not None:
    raise RuntimeError(f"flatjax's int8 kernel does not run here: {reason}")
  colsum = jnp.sum(wq, axis=0, dtype=jnp.int32)
  # Under vmap, one call per example: each quantizes its own rows, as the XLA path.
  call = jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct((x.shape[0], wq.shape[1]), jnp.float32),
                          vmap_method="sequential")
  return call(x.astype(jnp.float32), jnp.asarray(inverse, jnp.float32),
              jnp.asarray(zero_point, jnp.int32), pack_weights(wq), colsum,
              jnp.asarray(multiplier, jnp.float32), jnp.asarray(bias, jnp.float32))


_xla_only = False


@contextlib.contextmanager
def xla_only():
  """Within it, int8 layers traced run on XLA's integer dot (tests, benchmarks).

  Only traces made inside it: a function ``jax.jit`` has traced before keeps
  its first trace.
  """
  global _xla_only
  previous, _xla_only = _xla_only, True
  try:
    yield
  finally:
    _xla_only = previous


def dense_or(xla_path: Callable[..., jax.Array], *args) -> jax.Array:
  """``int8_dense(*args)`` when lowered for a CPU that runs the kernel, else
  ``xla_path(*args)``."""
  if _xla_only or not available():
    return xla_path(*args)
  return jax.lax.platform_dependent(*args, cpu=int8_dense, default=xla_path)
