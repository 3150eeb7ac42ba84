"""Run the qwenft CLI and print the CUDA peak memory at exit (qwenft does not log GPU memory)."""

import atexit
import sys
import time

import torch

T0 = time.perf_counter()


def report() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        print(f"GPU_PEAK max_memory_allocated={torch.cuda.max_memory_allocated() / 2**30:.2f} GiB "
              f"max_memory_reserved={torch.cuda.max_memory_reserved() / 2**30:.2f} GiB "
              f"wall={time.perf_counter() - T0:.1f} s", flush=True)


atexit.register(report)
from qwenft.cli import main  # noqa: E402

main(sys.argv[1:])
