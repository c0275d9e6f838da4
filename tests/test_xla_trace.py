"""benchmarks/xla_trace.py: reading XLA op events out of a profiler trace, against
hand-written HLO, hand-placed events and hand-computed sums."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import xla_trace  # noqa: E402

# Lines as XLA:GPU prints a compiled module: a cuBLAS call, a Triton GEMM fusion, a loop
# fusion under a Dropout scope, the optimizer's update, a backward fusion, and XLA:CPU's dot.
HLO = """
HloModule jit_step, entry_computation_layout={...}

ENTRY %main.1 (p0: bf16[4096,768]) -> f32[2] {
  %custom-call.3 = (bf16[4096,768]{1,0}, s8[0]{0}) custom-call(%p0, %p1), \
custom_call_target="__cublas$lt$matmul", metadata={op_name="jit(step)/jvp(Bert)/q/dot_general"}
  %gemm_fusion_dot.2 = bf16[4096,3072]{1,0} fusion(%a, %b), kind=kCustom, calls=%fc.2, \
metadata={op_name="jit(step)/transpose(jvp(Bert))/ffn/dot_general"}
  %loop_select_fusion.7 = bf16[32,12,128,128]{3,2,1,0} fusion(%c), kind=kLoop, calls=%fc.7, \
metadata={op_name="jit(step)/jvp(Bert)/Dropout_0/select_n"}
  %loop_add_fusion = f32[768]{0} fusion(%d), kind=kLoop, metadata={op_name="jit(step)/add"}
  %wrapped_add = f32[768]{0} fusion(%dot.4, %g), kind=kLoop, calls=%fc.1
  ROOT %dot.5 = f32[2]{0} dot(%x, %y), lhs_contracting_dims={1}, \
metadata={op_name="jit(step)/jvp(Bert)/classifier/dot_general"}
}
"""


def test_hlo_ops_reads_each_instruction_its_scope_and_whether_it_is_a_matmul():
  ops = xla_trace.hlo_ops(HLO)
  assert ops["custom-call.3"] == xla_trace.HloOp(
      "jit(step)/jvp(Bert)/q/dot_general", True)
  assert ops["gemm_fusion_dot.2"].matmul and ops["dot.5"].matmul
  assert not ops["loop_select_fusion.7"].matmul and not ops["loop_add_fusion"].matmul
  # An operand named dot.4 does not make the fusion that reads it a matmul.
  assert ops["wrapped_add"] == xla_trace.HloOp("", False)
  # XLA:GPU's kernels carry the instruction's name with dots and dashes as underscores.
  assert ops["loop_select_fusion_7"] is ops["loop_select_fusion.7"]
  assert ops["custom_call_3"] is ops["custom-call.3"]
  assert "HloModule" not in ops and "main.1" not in ops


def test_op_kind_and_phase():
  ops = xla_trace.hlo_ops(HLO)
  kind = lambda name: xla_trace.op_kind(name, ops.get(name))
  assert kind("custom-call.3") == kind("gemm_fusion_dot.2") == kind("dot.5") == "matmul"
  # cuBLAS's own kernel names when a launch carries no hlo_op annotation.
  assert kind("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64") == "matmul"
  assert kind("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_TNT") == "matmul"
  assert kind("loop_select_fusion.7") == "dropout"
  assert kind("loop_add_fusion") == kind("wrapped_add") == "other"
  assert kind("MemcpyD2D") == kind("Memset") == "copy"
  phase = lambda name: xla_trace.op_phase(ops.get(name))
  assert phase("custom-call.3") == phase("loop_select_fusion.7") == "forward"
  assert phase("gemm_fusion_dot.2") == "backward"
  assert phase("loop_add_fusion") == "update"
  assert phase("wrapped_add") == phase("no-such-op") == "unknown"


def test_covered_ns_is_the_length_of_the_union():
  assert xla_trace.covered_ns([]) == 0
  # [0, 10] and [5, 15] overlap: 15; [20, 30] adds 10; [22, 25] lies inside it.
  assert xla_trace.covered_ns([(20, 30), (0, 10), (22, 25), (5, 15)]) == 25
  assert xla_trace.covered_ns([(0, 100), (10, 20), (30, 40)]) == 100


def _event(name, start, duration, **stats):
  return SimpleNamespace(name=name, start_ns=start, duration_ns=duration,
                         stats=list(stats.items()))


def _profile(*planes):
  return SimpleNamespace(planes=[SimpleNamespace(name=n, lines=[
      SimpleNamespace(name=ln, events=evs) for ln, evs in lines]) for n, lines in planes])


def test_device_ops_takes_a_gpus_stream_kernels_named_by_their_hlo_op():
  data = _profile(
      ("/host:CPU", [("Host Threads/1", [_event("cuLaunchKernel", 0, 5, hlo_op="dot.5")])]),
      ("/device:GPU:0", [
          ("Stream #7(Kernel,MemcpyD2D)", [
              _event("sm90_xmma_gemm_bf16", 100, 40, hlo_op="custom-call.3"),
              _event("loop_select_fusion_7", 150, 10),
              _event("MemcpyD2D", 170, 5)]),
          ("CUPTI overhead", [_event("overhead", 0, 1000)])]))
  events, backend = xla_trace.device_ops(data, xla_trace.hlo_ops(HLO))
  assert backend == "gpu"
  assert events == [(100, 140, "custom-call.3"), (150, 160, "loop_select_fusion_7"),
                    (170, 175, "MemcpyD2D")]


def test_device_ops_on_a_cpu_takes_xla_thread_events_named_like_instructions():
  data = _profile(("/host:CPU", [
      ("python", [_event("dot.5", 0, 99)]),
      ("tf_XLAEigen/1", [_event("dot.5", 10, 20), _event("ThreadpoolListener::Record", 12, 0)]),
      ("tf_XLAEigen/3", [_event("loop_add_fusion", 40, 5)]),
      ("tf_XLAPjRtCpuClient/2", [_event("ThunkExecutor::Execute", 0, 50),
                                 _event("loop_add_fusion", 0, 50)])]))
  events, backend = xla_trace.device_ops(data, xla_trace.hlo_ops(HLO))
  assert backend == "cpu"
  assert sorted(events) == [(10, 30, "dot.5"), (40, 45, "loop_add_fusion")]


def test_summarize_sums_per_step_by_hand():
  ops = xla_trace.hlo_ops(HLO)
  E = xla_trace.OpEvent
  # Two steps, times in microseconds (x 1000 ns). Step 1: matmul 0-400, dropout 400-500,
  # a gap, update 600-700. Step 2: matmul 1000-1400 beside a copy 1300-1500, update 1500-1600.
  us = 1000
  events = [E(0, 400 * us, "custom-call.3"), E(400 * us, 500 * us, "loop_select_fusion.7"),
            E(600 * us, 700 * us, "loop_add_fusion"), E(1000 * us, 1400 * us, "custom-call.3"),
            E(1300 * us, 1500 * us, "Memset"), E(1500 * us, 1600 * us, "loop_add_fusion")]
  out = xla_trace.summarize(events, ops, steps=2, top=2, matmul_flops=2e9)
  assert out["span_ms"] == pytest.approx(1.6 / 2)
  # Covered: 0-500, 600-700, 1000-1600 = 1.2 ms over 2 steps.
  assert out["busy_ms"] == pytest.approx(0.6) and out["busy_share"] == pytest.approx(0.75)
  assert out["ops_per_step"] == 3
  assert out["kind_ms"] == pytest.approx({"matmul": 0.4, "copy": 0.1, "other": 0.1,
                                          "dropout": 0.05})
  assert out["phase_ms"] == pytest.approx({"forward": 0.45, "unknown": 0.1, "update": 0.1})
  assert [(op["name"], op["calls"]) for op in out["top"]] == [("custom-call.3", 1),
                                                              ("loop_add_fusion", 1)]
  assert out["top"][0]["ms"] == pytest.approx(0.4)
  assert (out["top"][0]["kind"], out["top"][0]["phase"]) == ("matmul", "forward")
  assert out["top"][1]["scope"] == "jit(step)/add"
  # 2 GFLOP per step in 0.4 ms of matmuls: 5 TFLOP/s.
  assert out["matmul_tflops"] == pytest.approx(5.0)
  with pytest.raises(RuntimeError, match="no XLA op events"):
    xla_trace.summarize([], ops, steps=1)
