"""Process-wide settings for flatjax's own entry points (the CLI, benchmarks).

Nothing here runs on import: a library user's process is left alone unless
they call :func:`tune_malloc` themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

#: ``FLATJAX_MALLOC=default`` leaves glibc's malloc settings alone.
MALLOC_ENV = "FLATJAX_MALLOC"

_applied = False


def _libc():
  if not sys.platform.startswith("linux"):
    return None
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.gnu_get_libc_version  # glibc only (musl has mallopt as a no-op stub)
    return libc
  except (OSError, AttributeError):
    return None


def tune_malloc() -> bool:
  """Make glibc's malloc keep and reuse freed memory; True when applied.

  XLA:CPU allocates each call's scratch buffer afresh (about 1.1 GB for a
  MiniLM train step at batch 32 x 128). glibc serves a block that large with
  ``mmap`` and returns it with ``munmap``, so every step page-faults the whole
  buffer in again: ~290,000 zero-filled 4 KiB pages, about 10% of the step on
  a 2-core CPU (``benchmarks/step_time.py``). With one arena, no ``mmap`` for
  large blocks and no trimming of the heap top, the freed buffer stays mapped
  and the next step reuses it. The process keeps its peak memory until exit,
  which suits a training process and not a long-lived library host: flatjax's
  CLI calls this at start-up (``FLATJAX_MALLOC=default`` turns it off); the
  library never does on its own.

  Call it before JAX starts its thread pools (before the first computation):
  glibc gives each new thread its own arena up to the limit set here, and an
  arena other than the main one still maps large blocks. Elsewhere than
  glibc/Linux, or with ``FLATJAX_MALLOC=default``, it does nothing and
  returns False.
  """
  global _applied
  if _applied:
    return True
  if os.environ.get(MALLOC_ENV, "tuned") == "default":
    return False
  libc = _libc()
  if libc is None:
    return False
  ok = all(libc.mallopt(param, value) == 1 for param, value in (
      (_M_ARENA_MAX, 1),
      (_M_MMAP_MAX, 0),
      (_M_TRIM_THRESHOLD, -1),  # size_t(-1) in glibc: never trim
  ))
  _applied = ok
  return ok


def train_compiler_options(backend: str | None = None) -> dict[str, str]:
  """The XLA options flatjax compiles its train step with, for ``backend``
  (default: JAX's default backend).

  On CPU, XLA's memory-optimised scheduler: a step's scratch buffer (~1.3 GB for
  MiniLM at batch 32 x 128) is allocated afresh, and page-faulted in, on every
  call, and this schedule makes it ~15% smaller; ``benchmarks/step_time.py``
  measured the MiniLM step ~9% faster with it on a 2-core CPU. It reorders
  independent operations only. Other backends: none.
  """
  import jax  # not at the top: tune_malloc runs before jax is imported
  backend = backend or jax.default_backend()
  if backend == "cpu":
    return {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
  return {}
