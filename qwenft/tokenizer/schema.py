"""Schema of the ``tokenizer`` config group: each key's type, allowed values and one-line doc, declared once.

Hydra rejects unknown keys and values of the wrong type (naming the key); ``qwenft.validation`` derives its range
and choice checks from the same fields (``qwenft.rules.rules_of``). The rows' own settings live beside the code
that reads them (``qwenft.model.row_settings``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from qwenft.model.row_settings import INITS, DistillSettings
from qwenft.rules import BOOL, OPT_TEXT, TEXTS, Enum, Float, Rule, setting

Init = StrEnum("Init", {name: name for name in INITS})  # type: ignore[misc]


class TrainableRows(StrEnum):
    new_rows = "new_rows"  # only the new rows train (input rows; output rows too where the head is untied)
    all = "all"  # the whole embedding matrix and head train
    frozen = "frozen"  # the naive recipe: new rows stay at their init


@dataclass
class TokenizerConfig:
    extend: bool = setting(True, BOOL, "add the words as new tokens (tokenizer=none: false)")
    words: list[str] = setting([], TEXTS, "the words, e.g. [mediventricular, neurogenix]")
    words_file: str | None = setting(None, OPT_TEXT, "one word a line, optionally word<TAB>gloss; `qwenft discover` "
                                                     "writes one")
    discover: Any = setting(None, Rule("any", null=True, check=lambda v: isinstance(v, DictConfig | dict),
                                       text="{min_count: N, max_words: N, min_length: N}"),
                            "train only: find the words in the training data, e.g. {min_count: 3, max_words: 100}")
    capitalized: bool = setting(False, BOOL, 'also add "Neurogenix" for "neurogenix"')
    init: Init = setting(Init.mean_subword, Enum(*INITS), "how a new row starts (docs/vocabulary.md)")
    drop_worse: bool = setting(False, BOOL, "leave out words whose new token is worse than their pieces on held-out "
                                            "text at step 0 (qwenft.tokenizer.word_report)")
    distill: DistillSettings = field(default_factory=DistillSettings)
    trainable_rows: TrainableRows = setting(TrainableRows.new_rows, Enum(*(r.value for r in TrainableRows)),
                                            "which rows train: new_rows | all | frozen")
    rows_lr: float = setting(1e-3, Float(0, 10, lo_open=True), "learning rate of the trainable rows")


def register() -> None:
    ConfigStore.instance().store(group="tokenizer", name="schema", node=TokenizerConfig)
