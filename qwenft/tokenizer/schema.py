"""Typed schema of the ``tokenizer`` config group: Hydra rejects unknown keys and bad values, naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore


class Init(StrEnum):
    mean_subword = "mean_subword"
    description = "description"
    default = "default"
    random = "random"


class TrainableRows(StrEnum):
    new_rows = "new_rows"
    all = "all"
    frozen = "frozen"


@dataclass
class TokenizerConfig:
    extend: bool = True
    words: list[str] = field(default_factory=list)
    words_file: str | None = None
    discover: Any = None  # {min_count, max_words} or null
    capitalized: bool = False
    init: Init = Init.mean_subword
    trainable_rows: TrainableRows = TrainableRows.new_rows
    rows_lr: float = 1e-3


def register() -> None:
    ConfigStore.instance().store(group="tokenizer", name="schema", node=TokenizerConfig)
