"""``qwenft discover``: which words are worth a token of their own in this corpus.

A word's worth is what extending saves: occurrences x (pieces - 1), with pieces counted for the form with a
leading space (how words mostly occur). Words are letter runs, as the Qwen2 pre-tokenizer cuts them, so numbers
never qualify; words that already are one token are skipped. The report gives the corpus fertility (tokens per
word) before and after extending with the chosen words, measured by re-tokenizing the corpus.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from qwenft.tokenizer.vocab import extend_tokenizer

WORD = re.compile(r"[^\W\d_]+")


@dataclass
class Candidate:
    word: str
    count: int
    pieces: int
    saving: int


def discover_words(
    texts: list[str],
    tokenizer: PreTrainedTokenizerBase,
    min_count: int = 3,
    max_words: int = 100,
    min_length: int = 4,
    ignore_case_duplicates: bool = True,
) -> list[Candidate]:
    counts = Counter(m.group(0) for t in texts for m in WORD.finditer(t))
    cands = []
    for word, count in counts.items():
        if count < min_count or len(word) < min_length:
            continue
        pieces = len(tokenizer(" " + word, add_special_tokens=False).input_ids)
        if pieces <= 1:
            continue
        cands.append(Candidate(word, count, pieces, count * (pieces - 1)))
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


def run(cfg) -> dict:  # noqa: ANN001 - DictConfig from Hydra
    from rich.console import Console
    from rich.table import Table

    from qwenft.data.text import read_texts
    from qwenft.model.qwen_tokenizer import qwen25_tokenizer

    texts = read_texts(cfg.corpus, columns=list(cfg.columns) if cfg.get("columns") else None)
    tokenizer = qwen25_tokenizer() if cfg.tokenizer_path is None else _load(cfg.tokenizer_path)
    cands = discover_words(texts, tokenizer, cfg.min_count, cfg.max_words, cfg.min_length)
    before = fertility(texts, tokenizer)
    after = fertility(texts, extend_tokenizer(tokenizer, [c.word for c in cands])[0]) if cands else before
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "words.txt").write_text("".join(f"{c.word}\n" for c in cands), encoding="utf-8")
    report = {
        "corpus": str(cfg.corpus),
        "texts": len(texts),
        "fertility_before": before,
        "fertility_after": after,
        "words": [asdict(c) for c in cands],
    }
    (out / "discover.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")

    table = Table(title=f"{len(cands)} candidate words from {len(texts)} texts")
    for col in ("word", "count", "pieces", "saving"):
        table.add_column(col, justify="left" if col == "word" else "right")
    for c in cands[:40]:
        table.add_row(c.word, str(c.count), str(c.pieces), str(c.saving))
    console = Console()
    console.print(table)
    console.print(f"fertility (tokens/word): {before:.3f} -> {after:.3f}")
    console.print(f"words file: {out / 'words.txt'}  (use: qwenft extend tokenizer.words_file={out / 'words.txt'})")
    return report


def _load(path: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)
