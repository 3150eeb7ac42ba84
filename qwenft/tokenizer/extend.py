"""A model whose vocabulary really contains the new words, saved as a normal HF folder.

Order matters and is the point of this module: extend the tokenizer (one token per word form, other text
unchanged), make room in the model (reuse Qwen's spare padded rows; grow to a multiple of 64 only when needed;
never shrink), initialise the new rows from what the word means to the model, and record it all in
``qwenft_vocab.json`` so that training, metrics and reloads know which rows are new.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from qwenft.errors import DataError, UserError
from qwenft.model.distill import DistillSettings, distill_rows
from qwenft.model.rows import embeddings_tied, ensure_rows, init_new_rows
from qwenft.tokenizer.vocab import (
    FormReport,
    NewToken,
    extend_tokenizer,
    normalise_words,
    words_with_new_tokens,
)

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
    forms: list[FormReport] = field(default_factory=list)  # per word and form: added / kept / skipped, and why
    distill: dict | None = None  # init=distill: snippets, steps, seconds, final losses

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
            "forms": [f.to_dict() for f in self.forms],
            **({"distill": self.distill} if self.distill else {}),
        }

    def report_lines(self) -> list[str]:
        """One line per form, for logs: ``word  ' form'  added (id 151665): reason``."""
        return [f"{f.word}  {f.form!r}  {f.status}" + (f" (id {f.id})" if f.id is not None else "") + f": {f.reason}"
                for f in self.forms]


def read_words_file(path: str | Path) -> tuple[list[str], dict[str, str]]:
    """One word a line, optionally ``word<TAB>gloss``; ``#`` starts a comment line."""
    from qwenft.inputs import decode_utf8, read_bytes

    path = Path(path)
    words, glosses = [], {}
    # a regular file of bounded size (a FIFO would block), strict UTF-8 with the line of a bad byte
    lines = decode_utf8(read_bytes(path, "words", what="words file"), str(path)).splitlines()
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
    texts: Sequence[str] = (),
    distill: DistillSettings | None = None,
) -> Extension:
    """Extend ``tokenizer`` and ``model`` (in place) with ``words``; returns the new tokenizer and the record.

    ``init="distill"`` learns the new rows on snippets of ``texts`` (the run's training text) around each word,
    the model writing snippets for words the texts lack (``qwenft.model.distill``)."""
    requested, notes = normalise_words(words, capitalized=capitalized)
    for note in notes:
        log.info("new words: %s", note)
    extended, new_tokens, forms = extend_tokenizer(tokenizer, requested)
    if not new_tokens:
        why = "; ".join(f"{f.form!r} {f.status}: {f.reason.split(';')[0]}" for f in forms[:6])
        raise UserError(f"no new tokens to add: every form of the {len(requested)} words is kept or skipped ({why}"
                        + (", ..." if len(forms) > 6 else "") + "); use tokenizer=none to train without extension")
    kept = words_with_new_tokens(forms)
    rows_before, rows_after = ensure_rows(model, max(t.id for t in new_tokens) + 1)
    init_new_rows(model, new_tokens, init, glosses=glosses, base_tokenizer=tokenizer, seed=seed)
    distilled = None
    if init == "distill":
        distilled = distill_rows(model, tokenizer, extended, new_tokens, texts, distill or DistillSettings(seed=seed))
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
        forms=forms,
        distill=distilled,
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


def distill_settings(tok_cfg, seed: int = 0) -> DistillSettings:  # noqa: ANN001 - DictConfig
    """``tokenizer.distill`` as :class:`DistillSettings` (``init=distill`` reads it; the run's seed unless set)."""
    node = tok_cfg.get("distill") or {}
    values = {k: node[k] for k in DistillSettings.__dataclass_fields__ if k in node and node[k] is not None}
    return DistillSettings(**{"seed": seed, **values})


def save_extended(model: PreTrainedModel, ext: Extension, out: str | Path, extra: dict | None = None) -> Path:
    """Model (safetensors) + tokenizer + manifest, written atomically into ``out``."""
    from qwenft.atomic import atomic_dir

    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        ext.tokenizer.save_pretrained(tmp)
        (tmp / MANIFEST).write_text(json.dumps({**ext.manifest(), **(extra or {})}, indent=2, ensure_ascii=False))
    return Path(out)
