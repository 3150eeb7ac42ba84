"""Shared by the training tests: running the real ``qwenft`` CLI in a subprocess, and the reference
per-token loss."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ,
       "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]),
       "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
TINY = [
    "model=tiny", "logger=csv", "callbacks.rich_progress_bar=null", "data.max_length=128", "data.batch_size=4",
    "data.max_val_examples=8", "tokenizer.words_file=${demo:words.txt}", "trainer.precision=32-true",
    "validate_before=false", "callbacks.new_word_metrics.max_texts=4", "callbacks.clinical_eval.n_prompts=0",
]


def qwenft(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qwenft.cli", *args], cwd=cwd, env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def token_losses(model, batch):  # noqa: ANN001, ANN201 - a causal LM, a batch dict -> Tensor
    """Per-label-token cross-entropy, in order, from the full logits (the reference the packed path must match)."""
    import torch

    from qwenft.data.format import IGNORE

    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                   position_ids=batch.get("position_ids"), use_cache=False).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    return torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="none")
