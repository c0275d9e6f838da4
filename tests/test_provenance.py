"""flatjax.provenance's record of the machine: a run.json's device in a few words, and the
CPU's vector instruction set (int8 scores depend on it)."""

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
