"""What a benchmark ran on: CPU model, vector ISA, thread count and load, printed at the top of each one.

Timings from a shared or loaded machine are only comparable as ratios measured in the same run, so every
benchmark states the machine next to its figures.
"""

from __future__ import annotations

import os
import platform

# Widest first: the first flag the CPU reports names its vector ISA.
_ISA_FLAGS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"),
              ("asimd", "NEON"), ("sve", "SVE"))


def _cpuinfo() -> dict[str, str]:
    """First processor's fields of /proc/cpuinfo (Linux); empty elsewhere."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def vector_isa() -> str:
    """Widest SIMD instruction set the CPU reports (Linux flags), e.g. ``"AVX-512"``; ``"unknown"`` elsewhere."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    for flag, name in _ISA_FLAGS:
        if flag in flags:
            return name
    return "unknown"


def threads() -> int:
    """Threads numba runs its parallel loops on (after ``numba.set_num_threads``)."""
    import numba

    return numba.get_num_threads()


def describe() -> str:
    """One line: CPU model, vector ISA, cores, numba threads and the 1-minute load average."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {cpu_model()}, {vector_isa()}, {os.cpu_count()} cores, {threads()} numba threads, "
            f"load average {load:.2f} (1 min)")


def print_machine() -> None:
    print(describe(), flush=True)
