"""Typed schema of the ``tokenizer`` config group: Hydra rejects unknown keys and bad values, naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore


class Init(StrEnum):
    distill = "distill"
    mean_subword = "mean_subword"
    adaptivocab = "adaptivocab"
    description = "description"
    default = "default"
    random = "random"


class TrainableRows(StrEnum):
    new_rows = "new_rows"
    all = "all"
    frozen = "frozen"


@dataclass
class DistillConfig:
    """``tokenizer.distill``: read by ``init=distill`` (fields and docs: ``qwenft.model.distill.DistillSettings``)."""

    snippets_per_word: int = 6
    chars_before: int = 60
    chars_after: int = 80
    epochs: int = 1
    batch_size: int = 8
    lr: float = 1e-4
    generated_tokens: int = 40
    seed: int | None = None  # null: the run's seed


@dataclass
class TokenizerConfig:
    extend: bool = True
    words: list[str] = field(default_factory=list)
    words_file: str | None = None
    discover: Any = None  # {min_count, max_words} or null
    capitalized: bool = False
    init: Init = Init.mean_subword
    drop_worse: bool = False  # leave out words whose token is worse than their pieces at step 0 (word_report.py)
    distill: DistillConfig = field(default_factory=DistillConfig)
    trainable_rows: TrainableRows = TrainableRows.new_rows
    rows_lr: float = 1e-3


def register() -> None:
    ConfigStore.instance().store(group="tokenizer", name="schema", node=TokenizerConfig)
