"""``qwenft extend model=... tokenizer.words=[...] out=DIR``: an extended model saved as a plain HF folder."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from qwenft.data.text import read_texts
from qwenft.metrics.newword import new_word_nll
from qwenft.tokenizer.extend import extend_model, save_extended, words_from_config


def run(cfg: DictConfig) -> dict:
    """Load, extend, (optionally) measure the zero-shot new-word NLL on held-out text, save."""
    from rich.console import Console
    from rich.table import Table

    words, glosses = words_from_config(cfg.tokenizer)
    held_out = read_texts(cfg.eval_text) if cfg.get("eval_text") else []
    loaded = instantiate(cfg.model)
    before = new_word_nll(loaded.model, loaded.tokenizer, held_out, words) if held_out else None
    ext = extend_model(loaded.model, loaded.tokenizer, words, init=cfg.tokenizer.init, glosses=glosses,
                       capitalized=cfg.tokenizer.capitalized, seed=cfg.seed)
    after = new_word_nll(loaded.model, ext.tokenizer, held_out, ext.words) if held_out else None
    metrics = {"zero_shot_before": before.as_dict() if before else None,
               "zero_shot_after_init": after.as_dict() if after else None}
    out = save_extended(loaded.model, ext, cfg.out, extra={"base_model": loaded.name, "metrics": metrics})

    console = Console()
    table = Table(title=f"{len(ext.words)} new words, {len(ext.new_tokens)} tokens, init={ext.init}")
    for col in ("word", "form", "id", "pieces before"):
        table.add_column(col)
    for t in ext.new_tokens[:30]:
        table.add_row(t.word, repr(t.form), str(t.id), " ".join(t.pieces))
    console.print(table)
    console.print(f"rows: {ext.rows_before} -> {ext.rows_after} (tied={ext.tied}); saved to {out}")
    if before and after:
        console.print(
            f"zero-shot new-word NLL over {after.occurrences} occurrences: "
            f"{before.new_word_nll:.3f} (original pieces) -> {after.new_word_nll:.3f} (after {ext.init} init); "
            f"bits/byte {before.bits_per_byte:.4f} -> {after.bits_per_byte:.4f}")
    return metrics
