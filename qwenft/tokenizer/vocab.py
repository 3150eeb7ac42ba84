"""Make each new word ONE token wherever it occurs, without changing the ids of any other text.

Why plain ``tokenizer.add_tokens(["neurogenix"])`` is wrong: added tokens are cut out of the text *before*
pre-tokenization, so the space in front of the word is left alone and becomes a token of its own
(``Ġtook``, ``Ġ``, ``neurogenix``) -- a sequence the model never saw in pre-training. Qwen's own words come in
two forms, with and without the leading space (``Ġtook`` / ``took``), and so do ours: each word gets two added
tokens, ``" neurogenix"`` (after a space, matched anywhere so that the preceding word does not block it) and
``"neurogenix"`` (start of text, after a newline, punctuation or a bracket; ``single_word`` so that it never
fires inside another word). Added tokens, unlike a custom pre-tokenizer, survive every way transformers reloads
a Qwen2 tokenizer (``AutoTokenizer`` rebuilds Qwen2's backend from vocab + merges and drops custom splitting).

Known limit, measured and tested: after a space, a longer word that *starts* with a new word is split as the
new word plus the rest (``" neurogenixes"`` -> ``" neurogenix"``, ``"es"``), because the with-space form cannot
check what follows it. Text without the new words as prefixes is unchanged (0 changed examples on MedQuAD).
"""

from __future__ import annotations

import copy
import re
import unicodedata
from dataclasses import asdict, dataclass, field

from tokenizers import AddedToken
from transformers import PreTrainedTokenizerBase
from transformers.convert_slow_tokenizer import bytes_to_unicode

from qwenft.errors import UserError

_BYTE_TO_UNICODE = bytes_to_unicode()


@dataclass
class NewToken:
    """One surface form of a new word and where it lives."""

    word: str
    form: str  # the text the token stands for: "neurogenix" or " neurogenix"
    id: int
    pieces: list[str] = field(default_factory=list)  # tokens the original tokenizer gives for `form`
    piece_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def byte_level(text: str) -> str:
    return "".join(_BYTE_TO_UNICODE[b] for b in text.encode("utf-8"))


_WORD_OK = re.compile(r"^[^\W\d_][\w'-]*$")


def normalise_words(
    words: list[str], tokenizer: PreTrainedTokenizerBase, capitalized: bool = False
) -> tuple[list[str], list[str]]:
    """Validate and deduplicate; returns (words to add, notes about what was dropped and why).

    Words with spaces, control characters or special-token look-alikes are errors (the user meant something
    else); duplicates and words that are already a single token are dropped with a note.
    """
    kept: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()
    for raw in words:
        word = unicodedata.normalize("NFC", str(raw).strip())
        if word in seen:
            notes.append(f"{word!r}: duplicate, kept once")
            continue
        if not word:
            raise UserError(f"new word {raw!r}: empty")
        if "<|" in word or "|>" in word or word.startswith("<"):
            raise UserError(f"new word {raw!r}: looks like a special token; choose a plain word")
        if any(unicodedata.category(c).startswith("C") for c in word):
            raise UserError(f"new word {raw!r}: contains a control character")
        if any(c.isspace() for c in word):
            raise UserError(f"new word {raw!r}: contains whitespace; add one word at a time")
        if not _WORD_OK.match(word):
            raise UserError(
                f"new word {raw!r}: must start with a letter and contain only letters, digits, ' or -"
            )
        variants = [word] + ([word[0].upper() + word[1:]] if capitalized and word[0].islower() else [])
        for v in variants:
            if v in seen:
                continue
            seen.add(v)
            if len(tokenizer(" " + v, add_special_tokens=False).input_ids) == 1 and len(
                tokenizer(v, add_special_tokens=False).input_ids
            ) == 1:
                notes.append(f"{v!r}: already a single token, skipped")
                continue
            kept.append(v)
    if not kept:
        raise UserError("no new words left to add (all were duplicates or already single tokens)")
    return kept, notes


def extend_tokenizer(
    tokenizer: PreTrainedTokenizerBase, words: list[str]
) -> tuple[PreTrainedTokenizerBase, list[NewToken]]:
    """A copy of ``tokenizer`` in which each word in ``words`` (already normalised) is one token per form."""
    extended = copy.deepcopy(tokenizer)
    vocab = extended.get_vocab()
    new_tokens: list[NewToken] = []
    for word in words:
        for form, single_word in ((" " + word, False), (word, True)):
            if form in vocab or byte_level(form) in vocab:
                continue
            extended.add_tokens([AddedToken(form, single_word=single_word, normalized=True, special=False)])
            enc = tokenizer(form, add_special_tokens=False)
            new_tokens.append(
                NewToken(word, form, extended.convert_tokens_to_ids(form),
                         tokenizer.convert_ids_to_tokens(enc.input_ids), enc.input_ids)
            )
    for t in new_tokens:
        got = extended(t.form, add_special_tokens=False).input_ids
        if got != [t.id]:
            raise RuntimeError(f"extension failed for {t.form!r}: {got} != [{t.id}]")
    return extended, new_tokens
