"""Callbacks: new-word perplexity at each validation, per-step history on disk, and a save on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import logging
import math
import signal
from pathlib import Path

import pytorch_lightning as pl

from qwenft.metrics.newword import new_word_nll

log = logging.getLogger(__name__)


class NewWordPerplexity(pl.Callback):
    """Per-word perplexity of the new words + bits per byte on held-out text (comparable across tokenizers)."""

    def __init__(self, texts: list[str], words: list[str], tokenizer, max_texts: int = 32) -> None:
        self.texts, self.words, self.tokenizer = texts[:max_texts], words, tokenizer

    def evaluate(self, module: pl.LightningModule) -> dict[str, float]:
        stats = new_word_nll(module.model, self.tokenizer, self.texts, self.words)
        return {"val/new_word_ppl": stats.new_word_ppl, "val/new_word_nll": stats.new_word_nll,
                "val/bits_per_byte": stats.bits_per_byte}

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking or not self.texts:
            return
        for k, v in self.evaluate(module).items():
            if not math.isnan(v):
                module.log(k, v, batch_size=1, sync_dist=False, rank_zero_only=True)


class History(pl.Callback):
    """``history.jsonl`` in the run dir: what ``qwenft report`` plots, readable without W&B."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, trainer, prefix: str) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        row = {"step": trainer.global_step}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)})
        if len(row) > 1:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def on_validation_end(self, trainer, module):
        self._write(trainer, "val/")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            self._write(trainer, "train/")


class SaveOnSignal(pl.Callback):
    """SIGTERM/SIGINT (a scheduler's preemption, Ctrl-C): finish the batch, save ``last.ckpt``, stop cleanly."""

    def __init__(self, ckpt_path: Path) -> None:
        self.ckpt_path = ckpt_path
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def on_train_start(self, trainer, module):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some launchers): leave signals alone
                pass

    def _handle(self, signum, frame):  # noqa: ANN001
        self.received = signum

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.received is not None:
            log.warning("signal %d: saving %s and stopping", self.received, self.ckpt_path)
            trainer.save_checkpoint(self.ckpt_path)
            trainer.should_stop = True

    def on_train_end(self, trainer, module):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class KillAtStep(pl.Callback):
    """Fault injection for tests (``QWENFT_KILL_AT_STEP=N``): SIGKILL this process right after step N."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            import os

            os.kill(os.getpid(), signal.SIGKILL)
