"""A model whose vocabulary really contains the new words, saved as a normal HF folder.

Order matters and is the point of this module: extend the tokenizer (one token per word form, other text
unchanged), make room in the model (reuse Qwen's spare padded rows; grow to a multiple of 64 only when needed;
never shrink), initialise the new rows from what the word means to the model, and record it all in
``qwenft_vocab.json`` so that training, metrics and reloads know which rows are new.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from qwenft.errors import DataError, UserError
from qwenft.model.rows import embeddings_tied, ensure_rows, init_new_rows
from qwenft.tokenizer.vocab import NewToken, extend_tokenizer, normalise_words

log = logging.getLogger(__name__)
MANIFEST = "qwenft_vocab.json"


@dataclass
class Extension:
    tokenizer: PreTrainedTokenizerBase
    new_tokens: list[NewToken]
    words: list[str]
    init: str
    rows_before: int
    rows_after: int
    tied: bool
    glosses: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def new_ids(self) -> list[int]:
        return [t.id for t in self.new_tokens]

    def manifest(self) -> dict:
        return {
            "words": self.words,
            "glosses": self.glosses,
            "init": self.init,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "tied": self.tied,
            "tokenizer_len": len(self.tokenizer),
            "new_tokens": [t.to_dict() for t in self.new_tokens],
        }


def read_words_file(path: str | Path) -> tuple[list[str], dict[str, str]]:
    """One word a line, optionally ``word<TAB>gloss``; ``#`` starts a comment line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), None, "words file not found")
    words, glosses = [], {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(str(path), None, f"not UTF-8 ({err.reason} at byte {err.start})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, _, gloss = line.partition("\t")
        if not word.strip():
            raise DataError(str(path), n, "empty word before the tab")
        words.append(word.strip())
        if gloss.strip():
            glosses[word.strip()] = gloss.strip()
    if not words:
        raise DataError(str(path), None, "no words")
    return words, glosses


def extend_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    words: list[str],
    init: str = "mean_subword",
    glosses: dict[str, str] | None = None,
    capitalized: bool = False,
    seed: int = 0,
) -> Extension:
    """Extend ``tokenizer`` and ``model`` (in place) with ``words``; returns the new tokenizer and the record."""
    kept, notes = normalise_words(words, tokenizer, capitalized=capitalized)
    for note in notes:
        log.info("new words: %s", note)
    extended, new_tokens = extend_tokenizer(tokenizer, kept)
    rows_before, rows_after = ensure_rows(model, max(t.id for t in new_tokens) + 1)
    init_new_rows(model, new_tokens, init, glosses=glosses, base_tokenizer=tokenizer, seed=seed)
    model.config.vocab_size = model.get_input_embeddings().weight.shape[0]
    return Extension(
        tokenizer=extended,
        new_tokens=new_tokens,
        words=kept,
        init=init,
        rows_before=rows_before,
        rows_after=rows_after,
        tied=embeddings_tied(model),
        glosses={w: g for w, g in (glosses or {}).items() if w in kept},
        notes=notes,
    )


def words_from_config(tok_cfg) -> tuple[list[str], dict[str, str]]:  # noqa: ANN001 - DictConfig
    words = [str(w) for w in (tok_cfg.get("words") or [])]
    glosses: dict[str, str] = {}
    if tok_cfg.get("words_file"):
        more, glosses = read_words_file(tok_cfg.words_file)
        words += more
    if not words:
        raise UserError("no new words: set tokenizer.words=[...] or tokenizer.words_file=PATH")
    return words, glosses


def save_extended(model: PreTrainedModel, ext: Extension, out: str | Path, extra: dict | None = None) -> Path:
    """Model (safetensors) + tokenizer + manifest, written atomically into ``out``."""
    from qwenft.atomic import atomic_dir

    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        ext.tokenizer.save_pretrained(tmp)
        (tmp / MANIFEST).write_text(json.dumps({**ext.manifest(), **(extra or {})}, indent=2, ensure_ascii=False))
    return Path(out)
