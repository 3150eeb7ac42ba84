"""This CPU's matmul peak (fp32, bf16) measured with torch, and the FLOPs of a training step.

The peak is the best of several large square matmuls, which is what dense layers approach; a training step's
FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the real step (forward + backward), so
LoRA's skipped weight gradients and the head computed only at label positions are counted as they happen.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import torch


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best sustained FLOP/s of an n x n x n matmul in ``dtype``."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)  # warm-up (and oneDNN kernel selection)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(3):
            torch.mm(a, b)
        dt = (time.perf_counter() - t) / 3
        best = max(best, 2 * n**3 / dt)
    return best


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of ``step`` (a full forward + backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    for dt in (torch.float32, torch.bfloat16):
        print(f"{dt}: {matmul_peak(dt) / 1e9:.1f} GFLOP/s")
