"""Which precision this machine runs fastest, so that defaults do not depend on the CPU a config was written on.

bfloat16 autocast is only a win on CPUs with native bf16 matmuls (AMX or AVX512-BF16): measured on one such
Xeon it was ~1.6x faster than fp32 for the 0.5B model, while on an Ice Lake Xeon without them a bf16 matmul
ran at 58 GFLOP/s against 207 GFLOP/s in fp32 (3.5x slower). Reading the CPU flags decides it.
"""

from __future__ import annotations

from pathlib import Path

NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return flags


def native_bf16(cpuinfo: str | None = None) -> bool:
    """True where the CPU multiplies bfloat16 in hardware."""
    return bool(cpu_flags(cpuinfo) & NATIVE_BF16_FLAGS)


def cpu_precision(cpuinfo: str | None = None) -> str:
    """Lightning precision for CPU training: ``bf16-mixed`` where bf16 is native, else ``32-true``."""
    return "bf16-mixed" if native_bf16(cpuinfo) else "32-true"
