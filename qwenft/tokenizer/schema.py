"""Schema of the ``tokenizer`` config group: each key's type, allowed values and one-line doc, declared once.

Hydra rejects unknown keys and values of the wrong type (naming the key); ``qwenft.validation`` derives its range
and choice checks from the same fields (``qwenft.rules.rules_of``). The rows' own settings live beside the code
that reads them (``qwenft.model.row_settings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from qwenft.model.row_settings import INITS, DistillSettings
from qwenft.model.schema import ModelSchema
from qwenft.rules import BOOL, OPT_TEXT, SEED, TEXT, TEXTS, Enum, Float, Int, Rule, group, setting, text_or_texts

Init = StrEnum("Init", {name: name for name in INITS})  # type: ignore[misc]


class TrainableRows(StrEnum):
    new_rows = "new_rows"  # only the new rows train (input rows; output rows too where the head is untied)
    output_rows = "output_rows"  # only the head's new rows train; the input rows keep their init (untied heads)
    all = "all"  # the whole embedding matrix and head train
    frozen = "frozen"  # the naive recipe: new rows stay at their init


@dataclass
class DiscoverArgs:
    """How ``qwenft discover`` (and ``tokenizer.discover``) picks words: ``qwenft.tokenizer.discover``."""

    min_count: int = setting(3, Int(1, 10**9), "a word must occur this often in the corpus")
    max_words: int = setting(100, Int(1, 10**6), "keep the words that save the most tokens, at most this many")
    min_length: int = setting(4, Int(1, 1000), "characters a word must have")


@dataclass
class TokenizerConfig:
    """``tokenizer``: which words become new tokens, how their rows start and how they train."""

    extend: bool = setting(True, BOOL, "add the words as new tokens (tokenizer=none: false)")
    words: list[str] = setting([], TEXTS, "the words, e.g. [mediventricular, neurogenix]")
    words_file: str | None = setting(None, OPT_TEXT, "one word a line, optionally word<TAB>gloss; `qwenft discover` "
                                                     "writes one")
    discover: Any = setting(None, Rule("any", null=True, check=lambda v: isinstance(v, DictConfig | dict),
                                       text="{min_count: N, max_words: N, min_length: N}"),
                            "train only: find the words in the training data, e.g. {min_count: 3, max_words: 100}",
                            schema=DiscoverArgs)
    capitalized: bool = setting(False, BOOL, 'also add "Neurogenix" for "neurogenix"')
    init: Init = setting(Init.mean_subword, Enum(*INITS), "how a new row starts (docs/vocabulary.md)")
    drop_worse: bool = setting(False, BOOL, "leave out words whose new token is worse than their pieces on held-out "
                                            "text at step 0 (qwenft.tokenizer.word_report)")
    distill: DistillSettings = group(DistillSettings)
    trainable_rows: TrainableRows = setting(TrainableRows.new_rows, Enum(*(r.value for r in TrainableRows)),
                                            "which rows train: new_rows | output_rows | all | frozen")
    rows_lr: float = setting(1e-3, Float(0, 10, lo_open=True), "learning rate of the trainable rows")


@dataclass(kw_only=True)
class DiscoverSchema(DiscoverArgs):
    """``conf/discover.yaml``: ``qwenft discover corpus=FILE``."""

    corpus: str = setting(rule=TEXT, doc="JSONL / CSV / Parquet / .txt / a saved HF dataset folder")
    columns: Any = setting(None, Rule("any", null=True, check=text_or_texts, text="a column name or a list"),
                           "text columns to read (null: every string column)")
    tokenizer_path: str | None = setting(None, OPT_TEXT, "the tokenizer to extend (null: Qwen2.5's, offline)")
    out: str = setting(rule=TEXT, doc="folder for words.txt and the report")


@dataclass(kw_only=True)
class ExtendSchema:
    """``conf/extend.yaml``: ``qwenft extend``; its ``model`` and ``tokenizer`` groups are checked as train's."""

    seed: int = setting(0, SEED, "seed of the rows' init")
    out: str = setting(rule=TEXT, doc="HF folder: model + tokenizer + qwenft_vocab.json")
    eval_text: str | None = setting(None, OPT_TEXT, "held-out text: the per-word zero-shot NLL before/after init")
    corpus: str | None = setting(None, OPT_TEXT, "your domain text: init=distill learns the rows on it")
    model: ModelSchema = group(ModelSchema)
    tokenizer: TokenizerConfig = group(TokenizerConfig)


def register() -> None:
    ConfigStore.instance().store(group="tokenizer", name="schema", node=TokenizerConfig)
