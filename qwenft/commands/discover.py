"""``qwenft discover corpus=PATH [min_count=3] [max_words=100] out=DIR``: words worth a token of their own."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from qwenft.atomic import atomic_write_text
from qwenft.data.text import read_texts
from qwenft.model.qwen_tokenizer import load_tokenizer
from qwenft.tokenizer.discover import discover_words, fertility
from qwenft.tokenizer.vocab import extend_tokenizer


def run(cfg: DictConfig) -> dict:
    from rich.console import Console
    from rich.table import Table

    columns = cfg.get("columns")
    columns = [columns] if isinstance(columns, str) else list(columns) if columns else None  # columns=text
    # a given tokenizer folder is checked before the corpus is read (the default one is built after)
    tokenizer = load_tokenizer(cfg.tokenizer_path) if cfg.tokenizer_path else None
    texts = read_texts(cfg.corpus, columns=columns)
    tokenizer = tokenizer or load_tokenizer(None)
    cands = discover_words(texts, tokenizer, cfg.min_count, cfg.max_words, cfg.min_length)
    before = fertility(texts, tokenizer)
    after = fertility(texts, extend_tokenizer(tokenizer, [c.word for c in cands])[0]) if cands else before
    out = Path(cfg.out)
    atomic_write_text(out / "words.txt", "".join(f"{c.word}\n" for c in cands))
    report = {"corpus": str(cfg.corpus), "texts": len(texts), "fertility_before": before, "fertility_after": after,
              "tokens_saved_per_1000_words": sum(c.per_1000_words for c in cands),
              "words": [asdict(c) for c in cands]}
    atomic_write_text(out / "discover.json", json.dumps(report, indent=2, ensure_ascii=False))

    table = Table(title=f"{len(cands)} candidate words from {len(texts)} texts")
    for col in ("word", "count", "pieces", "tokens saved", "per 1000 words"):
        table.add_column(col, justify="left" if col == "word" else "right")
    for c in cands[:40]:
        table.add_row(c.word, str(c.count), str(c.pieces), str(c.saving), f"{c.per_1000_words:.2f}")
    console = Console()
    console.print(table)
    console.print(f"fertility (tokens/word): {before:.3f} -> {after:.3f}; the {len(cands)} words save "
                  f"{sum(c.per_1000_words for c in cands):.1f} tokens per 1000 words of the corpus")
    console.print(f"words file: {out / 'words.txt'}  (use: qwenft extend tokenizer.words_file={out / 'words.txt'})")
    return report
