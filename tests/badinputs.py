"""Helpers of the bad-input battery: run ``qwenft.cli.main`` in this process and judge what a user would see.

Each CLI subprocess costs seconds of CPU (imports), so the battery calls ``main([...])`` in-process and reads
stderr through pytest's ``capsys``; ``tests/test_bad_inputs.py`` keeps only a few real subprocesses.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Outcome:
    code: int | None
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def one_error_line(self, code: int = 2) -> str:
        """Exit ``code``, exactly one ``error: ...`` line on stderr and it is the last one, no traceback; returns
        the message. (Informational lines before it, e.g. which generation engine was picked, are allowed.)"""
        assert self.code == code, (self.code, self.err[-3000:])
        assert "Traceback" not in self.err and "Error executing job" not in self.err, self.err[-3000:]
        lines = self.err_lines
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], lines
        return errors[0][len("error: "):]


def run_cli(args: list[str], monkeypatch, capsys, stdin: bytes | None = None, env: dict | None = None,
            timeout: int = 180) -> Outcome:
    """``qwenft ARGS`` in-process; a hang (a FIFO read) fails the test after ``timeout`` seconds."""
    from qwenft.cli import main

    monkeypatch.delenv("QWENFT_VERB", raising=False)
    monkeypatch.setattr(sys, "argv", ["qwenft"])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()

    def hang(signum, frame):  # noqa: ANN001
        raise TimeoutError(f"qwenft {' '.join(args)} hung for {timeout}s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(timeout)
    try:
        main(list(args))
        code: int | None = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256): "nothing lost, nothing written" is equality."""
    out = {}
    if root.exists():
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@contextmanager
def mounted(kind: str, target: Path, size: str = "2m"):
    """A real tmpfs (``kind="tmpfs"``, for disk-full) or a read-only bind mount of ``target`` (``"ro"``).

    Needs root (this sandbox runs tests as root, where chmod alone would not stop a write); skips otherwise.
    """
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    if kind == "tmpfs":
        cmds = [["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)]]
    else:
        cmds = [["mount", "--bind", str(target), str(target)], ["mount", "-o", "remount,bind,ro", str(target)]]
    done = 0
    try:
        for cmd in cmds:
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                pytest.skip(f"cannot mount here: {res.stderr.strip()}")
            done += 1
        yield target
    finally:
        if done:
            subprocess.run(["umount", str(target)], capture_output=True)
