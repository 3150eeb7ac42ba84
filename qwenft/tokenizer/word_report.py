"""Which new words pay before any training: each word's zero-shot NLL with Qwen's pieces and with its new token.

A new token is a bet: on real text, a word Qwen already predicts well from its pieces (frequent, two pieces) can
cost more as one fresh token than it saves, and the rest of the text pays for it too (bits per byte). The report
scores the same held-out texts twice -- with the original tokenizer *before* the model is touched (its spare rows
still hold their own values, so the softmax is the original one) and with the extended one after init -- and,
with ``tokenizer.drop_worse=true``, extends again without the words whose token is worse than their pieces. What
is dropped is always reported (log, ``run_info.json`` / ``qwenft_vocab.json``), never silent; words absent from
the texts cannot be judged and are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwenft.errors import UserError
from qwenft.metrics.newword import WordNLLStats, new_word_nll, per_word_rows
from qwenft.tokenizer.extend import Extension, extend_model
from qwenft.tokenizer.vocab import normalise_words, plan_forms, words_with_new_tokens

log = logging.getLogger(__name__)


@dataclass
class WordReport:
    """Zero-shot numbers of one extension on ``texts`` held-out texts (``per_word``: worst first)."""

    texts: int
    before: WordNLLStats
    after: WordNLLStats
    per_word: list[dict]
    dropped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"texts": self.texts, "zero_shot_before": self.before.as_dict(),
                "zero_shot_after_init": self.after.as_dict(), "per_word": self.per_word, "dropped": self.dropped}

    def summary(self, init: str) -> str:
        paying = sum(r["delta"] < 0 for r in self.per_word)
        return (f"zero-shot on {self.texts} held-out texts, {self.after.occurrences} occurrences: new-word NLL "
                f"{self.before.new_word_nll:.3f} (Qwen's pieces) -> {self.after.new_word_nll:.3f} (after {init} "
                f"init); bits/byte {self.before.bits_per_byte:.4f} -> {self.after.bits_per_byte:.4f}; "
                f"{paying} of {len(self.per_word)} words pay")


def worse_words(per_word: list[dict], words: Sequence[str]) -> list[str]:
    """The ``words`` whose occurrences (every surface form) cost more in total with the new token."""
    cost: dict[str, float] = {}
    for r in per_word:
        key = r["word"].lower()
        cost[key] = cost.get(key, 0.0) + r["delta"] * r["occurrences"]
    return [w for w in words if cost.get(w.lower(), 0.0) > 0]


def restrict(stats: WordNLLStats, drop: Sequence[str]) -> WordNLLStats:
    """``stats`` without the occurrences of ``drop`` (the whole text's NLL is the text's and stays)."""
    gone = {w.lower() for w in drop}
    kept = {w: v for w, v in stats.per_word.items() if w.lower() not in gone}
    return WordNLLStats(word_nll=sum(v[0] for v in kept.values()), occurrences=int(sum(v[1] for v in kept.values())),
                        text_nll=stats.text_nll, text_bytes=stats.text_bytes, per_word=kept)


def extend_reported(loaded, load: Callable[[], Any], words: list[str], heldout: Sequence[str], *,  # noqa: ANN001
                    drop_worse: bool = False, **extend_kwargs: Any) -> tuple[Any, Extension, WordReport | None]:
    """Extend ``loaded`` (a ``LoadedModel``) with ``words``, scoring ``heldout`` texts before and after init
    (``extend_kwargs`` go to ``extend_model``; its ``texts`` are the corpus the rows may distill on).

    With ``drop_worse`` the words whose token is worse than their pieces are left out: ``load()`` gives a fresh
    model (rows already written cannot be taken back) that is extended with the rest. Returns the model in use,
    the extension and the report (None when no text holds a word)."""
    requested = normalise_words(words, extend_kwargs.get("capitalized", False))[0]
    scored = words_with_new_tokens(plan_forms(loaded.tokenizer, requested))
    before = new_word_nll(loaded.model, loaded.tokenizer, list(heldout), scored) if heldout and scored else None
    ext = extend_model(loaded.model, loaded.tokenizer, words, **extend_kwargs)
    if before is None or not before.occurrences:
        if drop_worse:
            log.warning("tokenizer.drop_worse: no held-out text holds a new word; all %d words are kept", len(words))
        return loaded, ext, None
    after = new_word_nll(loaded.model, ext.tokenizer, list(heldout), ext.words)
    report = WordReport(len(heldout), before, after, per_word_rows(before, after))
    worse = worse_words(report.per_word, words) if drop_worse else []
    if not worse:
        return loaded, ext, report
    keep = [w for w in words if w not in worse]
    if not keep:
        raise UserError(f"tokenizer.drop_worse: every one of the {len(words)} words is worse as a new token than as "
                        "Qwen's pieces on the held-out text; train without extension (tokenizer=none)")
    log.warning("tokenizer.drop_worse: %d of %d words left out, their new token was worse than their pieces at "
                "step 0: %s", len(worse), len(words), ", ".join(worse[:20]) + (" ..." if len(worse) > 20 else ""))
    loaded = load()
    ext = extend_model(loaded.model, loaded.tokenizer, keep, **extend_kwargs)
    report.before = restrict(before, worse)
    report.after = new_word_nll(loaded.model, ext.tokenizer, list(heldout), ext.words)
    report.per_word = [r for r in report.per_word if r["word"].lower() not in {w.lower() for w in worse}]
    report.dropped = worse
    return loaded, ext, report
