"""What this machine can do: CPU instructions that decide which inference paths are worth offering.

Misuse to avoid: assuming a capability (bf16, VNNI) from the CPU's name; every path asks `detect_machine`.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CPU_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


@dataclass(frozen=True)
class Machine:
    """CPU features relevant to inference, as reported by the OS (and what torch makes of them)."""

    flags: frozenset[str]
    torch_capability: str
    threads: int
    cpu: str

    def signature(self) -> str:
        """Changes when anything that could change a path's speed or output does (keys cached choices)."""
        return hashlib.sha1(
            json.dumps([sorted(self.flags), self.torch_capability, self.threads, self.cpu]).encode()
        ).hexdigest()[:12]


def parse_cpuinfo(text: str) -> tuple[frozenset[str], str]:
    """The inference-relevant flags (of `CPU_FLAGS`) and the model name of the first CPU in /proc/cpuinfo text."""
    flags: set[str] | None = None
    cpu = "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and flags is None:
            flags = set(value.split()) & set(CPU_FLAGS)
        elif key.strip() == "model name" and cpu == "unknown":
            cpu = value.strip()
    return frozenset(flags or ()), cpu


@lru_cache(maxsize=1)
def detect_machine() -> Machine:
    """This machine, read once per process (/proc/cpuinfo, torch's CPU capability, usable cores)."""
    try:
        flags, cpu = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        flags, cpu = frozenset(), "unknown"
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Machine(flags, torch_capability(flags), threads, cpu)


def torch_capability(flags: frozenset[str]) -> str:
    """The kernels torch's ATen would pick here (`torch.backends.cpu.get_cpu_capability()`), read without
    importing torch (seconds that a query process should not pay): ATEN_CPU_CAPABILITY if set, else by flags."""
    forced = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().upper()
    if forced in ("DEFAULT", "AVX2", "AVX512"):
        return forced
    return "AVX512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "DEFAULT"
