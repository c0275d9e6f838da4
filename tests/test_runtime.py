"""flatjax.runtime.tune_malloc, checked against what the kernel reports
(/proc/self/statm): after it, a freed large block stays mapped and a new block
of the same size reuses it; without it glibc unmaps the block on free."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.path.exists("/proc/self/statm")),
    reason="glibc/Linux only")

_PROBE = r"""
import ctypes, json, sys, threading
from flatjax.runtime import tune_malloc
applied = tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
page = __import__("os").sysconf("SC_PAGE_SIZE")
def rss_mib():
  return int(open("/proc/self/statm").read().split()[1]) * page / 2**20
size = 256 << 20
out = {"applied": applied}
def work():  # a thread of its own, as XLA's executor threads are
  out["before"] = rss_mib()
  p = libc.malloc(size)
  ctypes.memset(p, 1, size)
  out["touched"] = rss_mib()
  libc.free(p)
  out["freed"] = rss_mib()
  q = libc.malloc(size)
  out["same_block"] = q == p
  libc.free(q)
t = threading.Thread(target=work)
t.start()
t.join()
print(json.dumps(out))
"""


def _probe(env_value):
  env = dict(os.environ)
  env.pop("GLIBC_TUNABLES", None)
  if env_value is None:
    env.pop("FLATJAX_MALLOC", None)
  else:
    env["FLATJAX_MALLOC"] = env_value
  out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                       text=True, check=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def test_tuned_malloc_keeps_and_reuses_a_freed_large_block():
  r = _probe(None)
  assert r["applied"] is True
  assert r["touched"] - r["before"] > 200  # the 256 MiB block was faulted in
  assert r["touched"] - r["freed"] < 16  # and is still mapped after free
  assert r["same_block"]  # the next request of that size gets it back


def test_default_malloc_is_left_alone():
  r = _probe("default")
  assert r["applied"] is False
  assert r["touched"] - r["before"] > 200
  assert r["touched"] - r["freed"] > 200  # glibc's default: munmap on free
