"""``qwenft extend model=... tokenizer.words=[...] out=DIR``: an extended model saved as a plain HF folder."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from qwenft.data.text import read_texts
from qwenft.tokenizer.extend import distill_settings, save_extended, words_from_config
from qwenft.tokenizer.vocab import normalise_words
from qwenft.tokenizer.word_report import extend_reported


def run(cfg: DictConfig) -> dict:
    """Load, extend, (optionally) measure the zero-shot new-word NLL on held-out text, save."""
    from rich.console import Console
    from rich.table import Table

    words, glosses = words_from_config(cfg.tokenizer)
    normalise_words(words, cfg.tokenizer.capitalized)  # bad words fail before the model loads
    held_out = read_texts(cfg.eval_text) if cfg.get("eval_text") else []
    corpus = read_texts(cfg.corpus) if cfg.get("corpus") else []
    loaded = instantiate(cfg.model)
    # "before" is scored first, while the model's spare rows still hold their original values
    loaded, ext, report = extend_reported(
        loaded, lambda: instantiate(cfg.model), words, held_out, drop_worse=bool(cfg.tokenizer.drop_worse),
        init=cfg.tokenizer.init, glosses=glosses, capitalized=cfg.tokenizer.capitalized, seed=cfg.seed,
        texts=corpus, distill=distill_settings(cfg.tokenizer, cfg.seed))
    per_word = report.per_word if report else []
    metrics = report.as_dict() if report else {"zero_shot_before": None, "zero_shot_after_init": None,
                                               "per_word": [], "dropped": []}
    out = save_extended(loaded.model, ext, cfg.out, extra={"base_model": loaded.name, "metrics": metrics})

    console = Console(width=max(Console().width, 150))  # the reasons need room; piped output is 80 wide
    counts = {s: sum(f.status == s for f in ext.forms) for s in ("added", "kept", "skipped")}
    table = Table(title=f"{len(ext.words)} new words, {len(ext.new_tokens)} tokens, init={ext.init} "
                        f"(forms: {counts['added']} added, {counts['kept']} kept, {counts['skipped']} skipped)")
    for col in ("word", "form", "status", "id", "pieces before", "why"):
        table.add_column(col, overflow="fold")
    for f in ext.forms[:60]:
        table.add_row(f.word, repr(f.form), f.status, "" if f.id is None else str(f.id), " ".join(f.pieces), f.reason)
    console.print(table)
    if len(ext.forms) > 60:
        console.print(f"... {len(ext.forms) - 60} more forms in {out}/qwenft_vocab.json (\"forms\")")
    console.print(f"rows: {ext.rows_before} -> {ext.rows_after} (tied={ext.tied}); saved to {out}")
    if per_word:
        words_table = Table(title=f"zero-shot NLL per word on {cfg.eval_text} (nats per occurrence; "
                                  f"{sum(r['delta'] < 0 for r in per_word)} of {len(per_word)} words pay)")
        for col in ("word", "occurrences", "pieces", "new token", "Δ"):
            words_table.add_column(col, justify="left" if col == "word" else "right")
        for r in per_word[:40]:
            words_table.add_row(r["word"], str(r["occurrences"]), f"{r['nll_pieces']:.2f}", f"{r['nll_new']:.2f}",
                                f"{r['delta']:+.2f}")
        console.print(words_table)
        if len(per_word) > 40:
            console.print(f"... {len(per_word) - 40} more words in {out}/qwenft_vocab.json (\"metrics\".\"per_word\")")
    if report:
        if report.dropped:
            console.print(f"tokenizer.drop_worse: left out {len(report.dropped)} words whose token was worse than "
                          f"their pieces: {', '.join(report.dropped)}")
        console.print(report.summary(ext.init))
    return metrics
