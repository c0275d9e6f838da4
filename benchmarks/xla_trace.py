"""What a ``jax.profiler`` trace says about one jitted step: its XLA ops, when they ran, and
what each one was.

``step_profile.py`` reads XLA:CPU's traces with it and the accelerator campaign its GPU
traces (``benchmarks/campaign/speed.py``). An op is an interval on the device's timeline
named by its HLO instruction: on a GPU, each kernel or copy on a CUDA stream, named by the
``hlo_op`` its launch was annotated with (else the kernel's own name); on a CPU, each event
of XLA's thread pools named like an instruction of the compiled module. The compiled HLO
(``compiled.as_text()``) tells what the instruction was: its ``op_name`` (the JAX and Flax
scopes it came from) and whether it is a matrix product.
"""

from __future__ import annotations

import collections
import glob
import os
import re
from typing import NamedTuple


class HloOp(NamedTuple):
  scope: str     # the instruction's metadata op_name: jit(...)/module path/primitive
  matmul: bool   # a dot, a cuBLAS call or a GEMM fusion


class OpEvent(NamedTuple):
  start_ns: int
  end_ns: int
  name: str


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_METADATA = re.compile(r"metadata=\{[^}]*\}")
# cuBLAS and cuBLASLt kernels (sm90_xmma_gemm_*, nvjet_*, cutlass_*), XLA's GEMM fusions
# and custom calls (gemm_fusion_dot.N, __cublas$gemm, __triton_gemm), XLA:CPU's dots.
_MATMUL = re.compile(r"gemm|cublas|matmul|xmma|nvjet|cutlass|(^|[\s(])dot\(|^dot|^ynn_fusion",
                     re.IGNORECASE)


def hlo_ops(hlo_text: str) -> dict[str, HloOp]:
  """Each instruction of a compiled module's text, by name (and by its kernel-safe name,
  dots and dashes as underscores, as XLA:GPU names the kernels it emits)."""
  ops = {}
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(line)
    if not m or "(" not in m.group(2):
      continue
    name, rest = m.groups()
    scope = _OP_NAME.search(rest)
    op = HloOp(scope.group(1) if scope else "",
               bool(_MATMUL.search(name) or _MATMUL.search(_METADATA.sub("", rest))))
    ops[name] = op
    ops.setdefault(re.sub(r"[.\-]", "_", name), op)
  return ops


def op_kind(name: str, op: HloOp | None) -> str:
  """matmul, dropout (drawing or applying a Dropout mask), copy (memcpy and memset), or
  other (every other fusion: layer norms, softmax, GELU, the optimizer's update, ...)."""
  if name.startswith(("Memcpy", "Memset")):
    return "copy"
  if (op is not None and op.matmul) or _MATMUL.search(name):
    return "matmul"
  if op is not None and "Dropout" in op.scope:
    return "dropout"
  return "other"


def op_phase(op: HloOp | None) -> str:
  """forward, backward (a transposed JVP: the gradient), update (the rest of the step: the
  optimizer, the loss's reductions) or unknown (no op_name), from the JAX scope."""
  if op is None or not op.scope:
    return "unknown"
  if "transpose(" in op.scope:
    return "backward"
  return "forward" if "jvp(" in op.scope else "update"


def covered_ns(intervals) -> int:
  """Length of the union of ``(start, end)`` intervals: the time at least one ran."""
  total, reach = 0, None
  for start, end in sorted(intervals):
    if reach is not None:
      start = max(start, reach)
    if end > start:
      total += end - start
    reach = end if reach is None else max(reach, end)
  return total


def trace_file(folder: str | os.PathLike) -> str:
  """The ``.xplane.pb`` that ``jax.profiler.trace(folder)`` wrote."""
  found = sorted(glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True))
  if not found:
    raise RuntimeError(f"jax.profiler wrote no .xplane.pb under {folder}")
  return found[-1]


def device_ops(data, ops: dict[str, HloOp]) -> tuple[list[OpEvent], str]:
  """The traced op events and where they ran (``"gpu"`` or ``"cpu"``).

  ``data`` is a ``jax.profiler.ProfileData``. A GPU plane's stream lines hold every kernel
  and copy; without one (XLA:CPU), the ops are the thread-pool events named like an
  instruction of ``ops``.
  """
  gpu = [p for p in data.planes if p.name.startswith("/device:GPU:")]
  found = []
  if gpu:
    for plane in gpu:
      for line in plane.lines:
        if not line.name.startswith("Stream #"):
          continue
        for ev in line.events:
          name = dict(ev.stats).get("hlo_op") or ev.name
          found.append(OpEvent(ev.start_ns, ev.start_ns + ev.duration_ns, str(name)))
    return found, "gpu"
  for plane in data.planes:
    for line in plane.lines:
      # The pool's threads: an event on the client's thread may span work it handed them.
      if line.name.startswith("tf_XLAEigen"):
        found += [OpEvent(ev.start_ns, ev.start_ns + ev.duration_ns, ev.name)
                  for ev in line.events if ev.name in ops]
  return found, "cpu"


def summarize(events: list[OpEvent], ops: dict[str, HloOp], steps: int, top: int = 15,
              matmul_flops: float | None = None) -> dict:
  """Per step, in milliseconds: the span from the first op's start to the last op's end,
  the time at least one op ran (``busy_ms``; the rest of the span is launch and dispatch
  gaps), op time by kind and by phase, and the ``top`` ops by time. Op times are summed over
  streams or threads, so ops that ran side by side both count. With ``matmul_flops`` (the step's
  matrix-product FLOPs), the rate the matmuls ran at (TFLOP/s)."""
  if not events:
    raise RuntimeError("the trace holds no XLA op events")
  ms = 1e-6 / steps
  span = max(e.end_ns for e in events) - min(e.start_ns for e in events)
  busy = covered_ns((e.start_ns, e.end_ns) for e in events)
  by_kind, by_phase = collections.Counter(), collections.Counter()
  by_op, calls = collections.Counter(), collections.Counter()
  for e in events:
    by_kind[op_kind(e.name, ops.get(e.name))] += e.end_ns - e.start_ns
    by_phase[op_phase(ops.get(e.name))] += e.end_ns - e.start_ns
    by_op[e.name] += e.end_ns - e.start_ns
    calls[e.name] += 1
  out = {"steps": steps, "span_ms": span * ms, "busy_ms": busy * ms,
         "busy_share": busy / span if span else 0.0, "ops_per_step": len(events) / steps,
         "kind_ms": {k: t * ms for k, t in by_kind.most_common()},
         "phase_ms": {k: t * ms for k, t in by_phase.most_common()},
         "top": [{"name": name, "ms": t * ms, "calls": calls[name] / steps,
                  "kind": op_kind(name, ops.get(name)), "phase": op_phase(ops.get(name)),
                  "scope": ops[name].scope if name in ops else ""}
                 for name, t in by_op.most_common(top)]}
  if matmul_flops and by_kind["matmul"]:
    out["matmul_tflops"] = matmul_flops / (by_kind["matmul"] * 1e-9 / steps) / 1e12
  return out
