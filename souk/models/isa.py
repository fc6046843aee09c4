"""An AVX2-only CPU on any x86-64 machine: what `souk bench encoder --isa avx2` runs under, and what it cannot cap.

Environment variables cap some libraries (`CAP_ENV`: oneDNN in torch and OpenVINO, torch's ATen kernels, MKL's
sgemm), but not the GEMM libraries that read the CPU themselves: OpenVINO's MLAS (its fp32 FullyConnected layers
without fused post-ops, 24 of 36 in MiniLM-L6, stayed AVX-512 under the variables, with MVN and Reduce) and ONNX
Runtime (MLAS throughout). `avx2_cpu(folder)` therefore also builds `avx2cpu.c` with the C compiler: preloaded, it
masks AVX-512, VNNI, bf16/fp16 and AMX out of every CPUID answer in the process (Linux CPUID faulting), so every
library picks its AVX2 kernels. Without a compiler or CPUID faulting, only the variables apply and
`report()["uncapped"]` names what still runs on the full instruction set.

Misuse to avoid: calling a run capped without `report()`; its `uncapped` list is part of the result.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

CAP_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
SOURCE = Path(__file__).with_name("avx2cpu.c")
SYMBOL = "souk_avx2_cpuid"
# What the variables alone leave on the CPU's full instruction set (seen in OpenVINO's runtime model, primitive
# types gemm_mlas_f32 / jit_avx512_f32, and by timing ONNX Runtime's MatMul), and what the CPUID mask leaves.
UNCAPPED_BY_ENV = [
    "OpenVINO MLAS sgemm (fp32 FullyConnected layers without fused post-ops)",
    "OpenVINO MVN and Reduce kernels",
    "onnxruntime (MLAS): its paths are left out of the choice",
]
UNCAPPED_BY_CPUID = ["glibc string functions (chosen by the loader before the CPUID mask is installed)"]


@lru_cache(maxsize=1)
def cpuid_masked() -> bool:
    """True when `avx2cpu.c` is preloaded in this process and masks CPUID (every library sees AVX2 at most)."""
    import ctypes

    try:
        return bool(getattr(ctypes.CDLL(None), SYMBOL)())
    except (AttributeError, OSError):
        return False


def env_capped() -> bool:
    """True when oneDNN is told to use AVX2 at most (ONEDNN_MAX_CPU_ISA), as `CAP_ENV` sets it."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ("AVX2", "AVX", "SSE41")


def build_mask(folder: Path) -> tuple[Path | None, str]:
    """`avx2cpu.c` compiled into `folder` (a fresh private directory of the caller's) and checked to take effect
    in a child process; (None, why) when there is no C compiler, the platform is not x86-64 Linux, or the CPU or
    kernel offers no CPUID faulting."""
    import platform
    import sys

    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None, f"no CPUID mask on {sys.platform}/{platform.machine()}"
    cc = next((c for c in (os.environ.get("CC", ""), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if cc is None:
        return None, "no C compiler (cc, gcc, clang) to build the CPUID mask"
    lib = folder / "libsoukavx2.so"
    try:
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(SOURCE)], check=True, capture_output=True,
                       timeout=60)
        probe = f"import ctypes; print(ctypes.CDLL(None).{SYMBOL}())"
        done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "LD_PRELOAD": str(lib)},
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"building the CPUID mask failed: {type(e).__name__}"
    if done.stdout.strip() != "1":
        return None, "the CPUID mask did not take effect (no CPUID faulting on this CPU or kernel)"
    return lib, "cpuid"


def avx2_env(folder: Path) -> tuple[dict[str, str], str]:
    """Variables for a child process that should run as on an AVX2-only CPU: `CAP_ENV`, plus the CPUID mask
    preloaded when `build_mask` could build it into `folder`; and how it is capped ("cpuid", or why not)."""
    lib, how = build_mask(folder)
    env = dict(CAP_ENV)
    if lib is not None:
        env["LD_PRELOAD"] = " ".join(p for p in (str(lib), os.environ.get("LD_PRELOAD", "")) if p)
    return env, how


def report() -> dict:
    """How this process is capped: `cpuid_mask` (every library sees AVX2 at most), the cap variables set, and
    `uncapped`, the libraries still on the CPU's full instruction set."""
    masked = cpuid_masked()
    env = {k: os.environ[k] for k in CAP_ENV if k in os.environ}
    if masked:
        uncapped = list(UNCAPPED_BY_CPUID)
    elif env_capped():
        uncapped = list(UNCAPPED_BY_ENV) + ([] if "MKL_ENABLE_INSTRUCTIONS" in env else ["MKL sgemm (torch)"])
    else:
        uncapped = ["everything (not capped)"]
    return {"cpuid_mask": masked, "env": env, "uncapped": uncapped}
