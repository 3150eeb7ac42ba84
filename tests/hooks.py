"""Test-only callbacks, injected through config (``+callbacks.kill._target_=hooks.KillAtStep``), never shipped.

The CLI subprocesses of the tests get ``tests/`` on PYTHONPATH (``trainutil.ENV``).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """Fault injection: SIGKILL this process right after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillInValidation(pl.Callback):
    """Fault injection: SIGKILL this process during the validation after optimizer step ``step`` (the last
    checkpoint of that step is already saved; its validation row is not)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.global_step >= self.step and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGKILL)


class RankState(pl.Callback):
    """What the DDP test compares: the examples each rank trained on, and a hash of its trainable weights."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, module):
        h = hashlib.sha256()
        for name, p in sorted(module.model.named_parameters()):
            if p.requires_grad:
                h.update(name.encode())
                h.update(p.detach().float().cpu().numpy().tobytes())
        state = {"examples": sorted(set(module.seen)), "params_sha256": h.hexdigest()}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(state))
