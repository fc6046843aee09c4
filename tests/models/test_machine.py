from souk.models.backends import BACKENDS
from souk.models.machine import CPU_FLAGS, Machine, detect_machine, parse_cpuinfo

CPUINFO = """processor\t: 0
model name\t: Example CPU @ 2.00GHz
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_bf16 sha_ni
processor\t: 1
model name\t: Other
flags\t\t: fpu avx512_bf16
"""


def test_cpuinfo_keeps_the_first_cpu_and_only_inference_flags():
    flags, cpu = parse_cpuinfo(CPUINFO)
    assert flags == {"avx2", "avx512f", "avx512_vnni", "amx_bf16"} and cpu == "Example CPU @ 2.00GHz"
    assert parse_cpuinfo("") == (frozenset(), "unknown")


def test_paths_are_refused_on_machines_without_their_instructions():
    bare = Machine(frozenset({"avx2"}), "AVX2", 2, "old")
    assert "bf16" in BACKENDS["torch-bf16"].missing(bare)
    assert BACKENDS["onnx-int8"].missing(bare) is None  # offered on AVX2, with 7-bit (reduce_range) weights
    assert "int8" in BACKENDS["openvino-int8"].missing(bare)
    assert "int8" in BACKENDS["onnx-int8"].missing(Machine(frozenset(), "DEFAULT", 2, "older"))
    assert BACKENDS["torch-fp32"].missing(bare) is None


def test_this_machine_is_read_not_assumed():
    m = detect_machine()
    assert m.flags <= set(CPU_FLAGS) and m.threads >= 1 and m.torch_capability
    assert m.signature() != Machine(m.flags ^ {"amx_int8"}, m.torch_capability, m.threads, m.cpu).signature()


def test_torch_capability_is_read_as_torch_reads_it_without_importing_torch(monkeypatch):
    import torch

    from souk.models.machine import detect_machine, torch_capability

    assert torch_capability(detect_machine().flags) == torch.backends.cpu.get_cpu_capability()
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert torch_capability(frozenset({"avx512f", "avx2"})) == "AVX2"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert torch_capability(frozenset({"avx2"})) == "AVX2" and torch_capability(frozenset()) == "DEFAULT"
