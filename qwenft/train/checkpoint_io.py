"""Checkpoints written atomically (temp file + rename) and read back with ``weights_only=True``.

A failed write (disk full, read-only) removes its temp file and raises one ``OutputError`` line, leaving the
previous ``last.ckpt`` valid; a temp file left by a killed process (``.last.ckpt.tmp-<pid>-xxxx``) is removed at the
next start (``qwenft.atomic.recover``). An unreadable checkpoint (truncated, not a checkpoint) is a
``UserError`` naming the file, not a traceback from the zip reader.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from qwenft.atomic import atomic_file
from qwenft.errors import UserError


def load_checkpoint_file(path: str | os.PathLike, map_location=None, mmap: bool = False) -> dict:  # noqa: ANN001
    """``torch.load(weights_only=True)``, or a UserError that says the file is unreadable and what to do."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location or "cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise UserError(f"{path}: checkpoint not found") from None
    except Exception as err:  # truncated zip, foreign pickle, not a file: the user needs the file and the reason
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: not a readable checkpoint (truncated or corrupt: {reason[:160]}); resume from "
                        "another checkpoint, or delete it to start over") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise UserError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return state


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint, path, storage_options=None):
        with atomic_file(path) as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_checkpoint_file(path, map_location=map_location)
