"""Which words are worth a token of their own in this corpus.

A word's worth is what extending saves: occurrences x (pieces - 1), with pieces counted for the form with a
leading space (how words mostly occur). Words are letter runs, as the Qwen2 pre-tokenizer cuts them, so numbers
never qualify; words that already are one token are skipped, and so are words that begin words Qwen spells as
one token (``pneumon`` for ``Ġpneumonia``): the extension would skip them (``qwenft.tokenizer.vocab``). The
report gives the corpus fertility (tokens per word) before and after extending with the chosen words, measured
by re-tokenizing the corpus.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from qwenft.errors import UserError
from qwenft.tokenizer.vocab import known_longer_words

WORD = re.compile(r"[^\W\d_]+")


@dataclass
class Candidate:
    word: str
    count: int
    pieces: int
    saving: int  # tokens the corpus saves: count x (pieces - 1)
    per_1000_words: float = 0.0  # the same per 1 000 words of the corpus (comparable across corpora)


def discover_words(
    texts: list[str],
    tokenizer: PreTrainedTokenizerBase,
    min_count: int = 3,
    max_words: int = 100,
    min_length: int = 4,
    ignore_case_duplicates: bool = True,
) -> list[Candidate]:
    for name, value, low in (("min_count", min_count, 1), ("max_words", max_words, 1), ("min_length", min_length, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:  # max_words=-5 would drop 5 words
            raise UserError(f"{name}={value!r}: must be an integer >= {low}")
    counts = Counter(m.group(0) for t in texts for m in WORD.finditer(t))
    n_words = max(sum(len(t.split()) for t in texts), 1)
    keys = sorted(tokenizer.get_vocab())
    cands = []
    for word, count in counts.items():
        if count < min_count or len(word) < min_length:
            continue
        pieces = len(tokenizer(" " + word, add_special_tokens=False).input_ids)
        if pieces <= 1 or known_longer_words(keys, " " + word, limit=1):
            continue
        cands.append(Candidate(word, count, pieces, count * (pieces - 1), 1000 * count * (pieces - 1) / n_words))
    cands.sort(key=lambda c: (-c.saving, c.word))
    if ignore_case_duplicates:  # "Neurogenix" and "neurogenix": keep the more valuable spelling
        seen: set[str] = set()
        cands = [c for c in cands if not (c.word.lower() in seen or seen.add(c.word.lower()))]
    return cands[:max_words]


def fertility(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> float:
    """Tokens per whitespace-separated word."""
    n_words = sum(len(t.split()) for t in texts)
    n_tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids)
    return n_tokens / max(n_words, 1)
