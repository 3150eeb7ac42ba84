"""Shared by the vLLM tests: why they skip (not installed, or a machine vLLM cannot run on), and process checks."""

from __future__ import annotations

import time

import psutil
import pytest


def vllm_skip_reason() -> str | None:
    """None where the real engine can run here, else the one-line reason the vLLM tests skip."""
    from qwenft.clinical.engines.vllm import find_python, unsupported_reason

    if find_python() is None:
        return ("vLLM is not installed: no .venv-vllm (`make setup` installs it unless QWENFT_SKIP_VLLM=1) and no "
                "QWENFT_VLLM_PYTHON")
    why = unsupported_reason()
    return f"vLLM cannot run on this machine: {why}" if why else None


def require_vllm() -> None:
    why = vllm_skip_reason()
    if why:
        pytest.skip(why)


def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and every process below it (vLLM's API server, engine core, workers...)."""
    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def assert_all_gone(procs: list[psutil.Process], timeout: float = 30.0) -> None:
    """Every process of ``procs`` has exited (zombies count as gone: only their parent's wait is missing)."""
    deadline = time.monotonic() + timeout
    alive = procs
    def running(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    while time.monotonic() < deadline:
        alive = [p for p in procs if running(p)]
        if not alive:
            return
        time.sleep(0.5)
    names = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in alive]
    for p in alive:  # leave nothing behind for the next test
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    raise AssertionError(f"processes left running: {names}")
