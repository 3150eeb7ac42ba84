"""New-word perplexity and bits per byte: the two numbers that stay comparable across tokenizations.

Per-token perplexity is not: an extended tokenizer spells ``neurogenix`` with one token where the original
needs three, so "perplexity per token" changes meaning. Here the unit is the *word occurrence*: its NLL is the
sum of the NLLs of the tokens that spell it (1 after extension, k pieces before), averaged over occurrences,
and new-word perplexity is ``exp`` of that. Bits per byte divides the NLL of the whole text by its UTF-8 bytes.
Every text is scored after one ``<|endoftext|>`` context token so that its first token is predicted too, and
both tokenizations pay for exactly the same characters. A text longer than ``max_length`` tokens (a raw-text
document) is scored in consecutive windows, each after its own context token, so all of it counts: nothing is
truncated away, and an occurrence is found wherever it is.

Occurrences are found in the text, not in the tokens, so they are the same for every tokenizer: a word whose
space form Qwen already has (``Ġinsulin``, kept by the extension) is one token before and after; a word the
extension added is its pieces before and one token after.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchmetrics import Metric
from transformers import PreTrainedModel, PreTrainedTokenizerBase

CONTEXT_TOKEN = "<|endoftext|>"


@dataclass
class WordNLLStats:
    word_nll: float = 0.0  # summed over occurrences, nats
    occurrences: int = 0
    text_nll: float = 0.0  # summed over every token of every text, nats
    text_bytes: int = 0
    per_word: dict[str, list[float]] = field(default_factory=dict)  # word -> [nll sum, count]
    first_word_nll: float = 0.0  # the first occurrence of each word in each text only: nothing to copy from
    first_occurrences: int = 0

    @property
    def new_word_nll(self) -> float:
        return self.word_nll / self.occurrences if self.occurrences else float("nan")

    @property
    def first_new_word_nll(self) -> float:
        """NLL per *first* occurrence (of a word, in a text): what a model has learned about the word rather than
        what it can copy from earlier in the same text."""
        return self.first_word_nll / self.first_occurrences if self.first_occurrences else float("nan")

    @property
    def new_word_ppl(self) -> float:
        return math.exp(self.new_word_nll) if self.occurrences else float("nan")

    @property
    def bits_per_byte(self) -> float:
        return self.text_nll / math.log(2) / self.text_bytes if self.text_bytes else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "new_word_nll": self.new_word_nll,
            "new_word_ppl": self.new_word_ppl,
            "bits_per_byte": self.bits_per_byte,
            "new_word_occurrences": self.occurrences,
        }


def word_pattern(words: list[str]) -> re.Pattern[str]:
    """Occurrences bounded like the Qwen2 pre-tokenizer bounds a letter run (no letter before, none after)."""
    alt = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"(?<![^\W\d_])(?:{alt})(?![^\W_])")


@torch.no_grad()
def token_nll(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """NLL (nats) of token t given tokens < t, shape [batch, seq-1]; logits materialised one row at a time."""
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    logits = out.logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1), reduction="none"
    ).view(input_ids.shape[0], -1)
    return nll * attention_mask[:, 1:]


@torch.no_grad()
def new_word_nll(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    words: list[str],
    max_length: int = 1024,
    batch_size: int = 2,
) -> WordNLLStats:
    """Score ``texts`` with ``model``/``tokenizer`` (extended or not) and collect new-word and byte NLLs."""
    stats = WordNLLStats()
    pattern = word_pattern(words) if words else None
    ctx = tokenizer.convert_tokens_to_ids(CONTEXT_TOKEN)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        encs = [tokenizer(t, add_special_tokens=False, return_offsets_mapping=True) for t in texts]
        span = max(max_length - 1, 1)
        windows = [(i, s) for i, e in enumerate(encs) for s in range(0, len(e.input_ids), span)]
        per_text = [torch.zeros(len(e.input_ids), dtype=torch.float64) for e in encs]
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            pieces = [encs[i].input_ids[s : s + span] for i, s in chunk]
            width = max(len(p) for p in pieces) + 1
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, p in enumerate(pieces):
                ids[row, : len(p) + 1] = torch.tensor([ctx, *p])
                mask[row, : len(p) + 1] = 1
            nll = token_nll(model, ids.to(device), mask.to(device)).cpu()
            for row, ((i, s), p) in enumerate(zip(chunk, pieces, strict=True)):
                per_text[i][s : s + len(p)] = nll[row, : len(p)].double()
        for text, e, row in zip(texts, encs, per_text, strict=True):
            stats.text_nll += float(row.sum())
            stats.text_bytes += len(text.encode("utf-8")) if e.input_ids else 0
            if pattern is None:
                continue
            seen: set[str] = set()
            for m in pattern.finditer(text):
                s, t = m.span()
                hit = [k for k, (a, b) in enumerate(e.offset_mapping) if a < t and b > s]
                value = float(row[hit].sum())
                stats.word_nll += value
                stats.occurrences += 1
                acc = stats.per_word.setdefault(m.group(0), [0.0, 0])
                acc[0] += value
                acc[1] += 1
                if m.group(0).lower() not in seen:
                    seen.add(m.group(0).lower())
                    stats.first_word_nll += value
                    stats.first_occurrences += 1
    finally:
        model.train(was_training)
    return stats


def per_word_rows(before: WordNLLStats, after: WordNLLStats) -> list[dict]:
    """Per word: NLL per occurrence with the original pieces (``before``) and with the new token (``after``), the
    difference (negative: the token pays), sorted by what the word costs in total (occurrences x difference, worst
    first), so the words that do not pay are at the top of the report."""
    rows = []
    for word, (nll_new, count) in after.per_word.items():
        nll_pieces, count_before = before.per_word.get(word, (float("nan"), 0))
        if not count or count_before != count:
            continue
        rows.append({"word": word, "occurrences": count, "nll_pieces": nll_pieces / count, "nll_new": nll_new / count,
                     "delta": (nll_new - nll_pieces) / count})
    return sorted(rows, key=lambda r: -r["delta"] * r["occurrences"])


class NewWordPerplexity(Metric):
    """Accumulates :class:`WordNLLStats` across batches and ranks (sum-reduced, so DDP-correct)."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("word_nll", "occurrences", "text_nll", "text_bytes"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, stats: WordNLLStats) -> None:  # type: ignore[override]
        self.word_nll += stats.word_nll
        self.occurrences += stats.occurrences
        self.text_nll += stats.text_nll
        self.text_bytes += stats.text_bytes

    def compute(self) -> dict[str, Tensor]:
        nll = self.word_nll / self.occurrences.clamp(min=1)
        return {
            "new_word_nll": nll,
            "new_word_ppl": torch.exp(nll),
            "bits_per_byte": self.text_nll / math.log(2) / self.text_bytes.clamp(min=1),
        }
