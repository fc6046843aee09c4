"""An AVX2-only CPU on any x86-64 machine: the CPUID mask takes effect in a child process, and a run says what it
could not cap."""
import os
import subprocess
import sys

import pytest

from souk.models import isa
from souk.models.backends import BACKENDS, capped_to_avx2
from souk.models.machine import detect_machine


def test_report_names_what_the_variables_alone_leave_uncapped(monkeypatch):
    for name in isa.CAP_ENV:
        monkeypatch.delenv(name, raising=False)
    assert not isa.cpuid_masked()  # this process has no mask preloaded
    assert isa.report() == {"cpuid_mask": False, "env": {}, "uncapped": ["everything (not capped)"]}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert any("MKL" in u for u in isa.report()["uncapped"])  # MKL_ENABLE_INSTRUCTIONS not set
    for name, value in isa.CAP_ENV.items():
        monkeypatch.setenv(name, value)
    report = isa.report()
    assert report["env"] == isa.CAP_ENV and not any("MKL" in u for u in report["uncapped"])
    assert any("OpenVINO MLAS" in u for u in report["uncapped"]) and any("onnxruntime" in u for u in report["uncapped"])


def test_with_the_mask_onnx_runtime_is_measured_too(monkeypatch):
    m = detect_machine()
    monkeypatch.setattr(isa, "cpuid_masked", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert capped_to_avx2()
    assert BACKENDS["onnx-fp32"].missing(m) in (None, "onnxruntime is not installed")
    for name in ("torch-bf16", "openvino-int8", "openvino-bf16"):
        assert BACKENDS[name].missing(m), name  # no bf16 or VNNI on an AVX2-only CPU
    assert isa.report()["uncapped"] == isa.UNCAPPED_BY_CPUID


@pytest.mark.slow
def test_the_mask_hides_avx512_from_every_library_in_a_child(tmp_path):
    env, how = isa.avx2_env(tmp_path)
    if how != "cpuid":
        pytest.skip(how)  # no compiler or no CPUID faulting here: the variables alone apply
    features = "from numpy._core._multiarray_umath import __cpu_features__ as f; print(f['AVX512F'], f['AVX2'])"
    masked = subprocess.run([sys.executable, "-c", features], env={**os.environ, **env}, capture_output=True,
                            text=True, check=True)
    assert masked.stdout.split() == ["False", "True"]
    gemm = ("import torch; print(torch.backends.cpu.get_cpu_capability()); "
            "torch.randn(64, 64) @ torch.randn(64, 64)")
    done = subprocess.run([sys.executable, "-c", gemm], env={**os.environ, **env, "MKL_VERBOSE": "1"},
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[0] == "AVX2"
    if "MKL_VERBOSE" in done.stdout:  # torch built on MKL: its sgemm reports the instruction set it runs
        assert "AVX2" in done.stdout and "AVX-512" not in done.stdout
    check = "from souk.models.isa import report; print(report()['cpuid_mask'])"
    mine = subprocess.run([sys.executable, "-c", check], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True)
    assert mine.stdout.strip() == "True"


def test_without_a_compiler_the_mask_is_not_built(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CC", "")
    env, how = isa.avx2_env(tmp_path)
    assert "LD_PRELOAD" not in env
    assert env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2" and ("compiler" in how or "CPUID mask on" in how)
