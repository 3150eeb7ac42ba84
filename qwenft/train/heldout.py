"""Which text the new-word metrics score, and what the best checkpoint can therefore monitor.

Both are decided before ``trainer.fit`` from the texts themselves, not discovered by a crash at the first
validation: ``val/new_word_nll`` is only logged when a new word occurs in the scored text (a perplexity over zero
occurrences would be a lie), so a run whose words are absent from the validation split (common with real data
and with ``data.heldout_text``) monitors ``val/loss`` instead, and says so in the log and in ``run_info.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from omegaconf import DictConfig

from qwenft.metrics.newword import word_pattern

log = logging.getLogger(__name__)

NEW_WORD_MONITOR = "val/new_word_nll"
FALLBACK_MONITOR = "val/loss"
NO_WORDS = "no new words in this run"
TRAIN_TEXTS = 32  # without a validation split: how many training texts stand in for held-out text


@dataclass
class Heldout:
    """The texts ``NewWordMetrics`` scores and where they come from (``run_info.json`` ``heldout``)."""

    texts: list[str]
    source: str  # "validation split" | "data.heldout_text=PATH" | "training texts (no validation split)"
    from_training: bool = False

    def record(self, words: list[str], max_texts: int | None) -> dict:
        scored = self.texts[:max_texts] if max_texts is not None else self.texts
        return {"source": self.source, "texts": len(scored), "new_word_occurrences": occurrences(scored, words)}


def heldout_texts(cfg: DictConfig, train_texts: list[str], val_texts: list[str] | None, read_texts,
                  warn: bool = True) -> Heldout:
    """``data.heldout_text`` if set, else the validation split, else the first training texts, with a warning:
    numbers named ``val/...`` computed on text the model trains on are not held-out numbers."""
    path = cfg.data.get("heldout_text")
    if path:
        return Heldout(read_texts(path, unit=cfg.data.get("text_unit", "line")), f"data.heldout_text={path}")
    if val_texts is not None:
        return Heldout(list(val_texts), "validation split")
    if warn:
        log.warning("no validation split: no validation runs, no best checkpoint is kept, and the new-word metrics "
                    "reported as val/* are computed on the first %d training texts (not held out); set "
                    "data.val_path= or data.heldout_text= for held-out numbers", TRAIN_TEXTS)
    return Heldout(list(train_texts[:TRAIN_TEXTS]), f"training texts (first {TRAIN_TEXTS}; no validation split)",
                   from_training=True)


def zero_shot_texts(cfg: DictConfig, train_texts: list[str], val_texts: list[str] | None, read_texts) -> Heldout:
    """What the step-0 per-word report scores, before the data is formatted: the same choice of text as the
    new-word metrics, as many texts as they score (``TRAIN_TEXTS`` when they are off)."""
    chosen = heldout_texts(cfg, train_texts, val_texts, read_texts, warn=False)
    chosen.texts = chosen.texts[: new_word_metrics_texts(cfg) or TRAIN_TEXTS]
    return chosen


def occurrences(texts: list[str], words: list[str]) -> int:
    """How often the new words occur in ``texts``, counted as ``qwenft.metrics.newword`` counts them."""
    if not words:
        return 0
    pattern = word_pattern(words)
    return sum(len(pattern.findall(t)) for t in texts)


def new_word_metrics_texts(cfg: DictConfig) -> int | None:
    """``max_texts`` of the configured ``NewWordMetrics`` callback; None when the callback is off."""
    for node in (cfg.get("callbacks") or {}).values():
        if isinstance(node, DictConfig) and str(node.get("_target_", "")).endswith("NewWordMetrics"):
            return int(node.get("max_texts", 32))
    return None


def monitor_fallback(cfg: DictConfig, words: list[str], heldout: Heldout) -> str | None:
    """Why ``val/new_word_nll`` will not be logged at validation (so the best checkpoint must monitor
    ``val/loss``), or None when it will be."""
    if not words:
        return NO_WORDS
    max_texts = new_word_metrics_texts(cfg)
    if max_texts is None:
        return "callbacks.new_word_metrics is off"
    scored = heldout.texts[:max_texts]
    if not scored:
        return f"no held-out text is scored ({heldout.source}, callbacks.new_word_metrics.max_texts={max_texts})"
    if not occurrences(scored, words):
        return (f"none of the {len(words)} new words occurs in the {len(scored)} held-out texts scored "
                f"({heldout.source})")
    return None
