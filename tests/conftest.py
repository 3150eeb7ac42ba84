"""Shared test setup: nothing reaches the network, W&B stays offline, and tiny models are built fresh per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def demo_words() -> list[str]:
    """A handful of the demo's invented words: enough new rows to notice a lost or untied row."""
    from qwenft.data.datamodule import DEMO_DIR
    from qwenft.tokenizer.extend import read_words_file

    return read_words_file(DEMO_DIR / "words.txt")[0][:6]
