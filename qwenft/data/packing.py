"""Batches by token budget (``data.tokens_per_batch``): a step carries about as many tokens as fit, not N examples.

On a GPU a step of 8 short examples (~150 tokens each) is latency bound; the budget makes a step tens of thousands of
tokens whatever the examples' lengths. Two layouts, chosen by ``data.packing`` as without a budget:

* packed (padding-free): examples are laid end to end in rows of at most ``data.pack_length`` tokens (default
  ``data.max_length``), first fit in the epoch's order, as many rows as the budget holds (``rows * pack_length <=
  tokens_per_batch``). ``position_ids`` restart at 0 for each example, labels are -100 at each example's first token
  and there is no ``attention_mask``: transformers 5 (``masking_utils.find_packed_sequence_indices``) reads the
  restarts as sequence boundaries for every attention implementation -- a block-diagonal mask for ``sdpa``/``eager``
  (dense, so its cost grows with the row's length squared: rows stay ``pack_length`` long), a block-sparse mask for
  ``flex_attention``, varlen kernels for ``flash_attention_2/3`` (which read the restarts only in a one-row batch:
  with flash attention a batch is ONE row of the whole budget, ``row_length``). This is
  ``DataCollatorWithFlattening``'s layout, several rows at once. The short tail of a row is filled with pad tokens
  that form their own sequence (positions 0.., labels -100), so they attend to nothing real and count as padding,
  not as tokens;
* padded (``data.packing=false``): examples sorted by length inside shuffled buckets, a batch grows while
  ``examples * longest <= tokens_per_batch``.

A batch is a list of example indices; the rows of a packed batch are rebuilt from that list by the same first fit,
so the resumable loader's state (epoch, batches consumed) still says exactly where an epoch stopped.
"""

from __future__ import annotations

import random

import torch

from qwenft.data.format import IGNORE


def row_length(attn_implementation: str | None, tokens_per_batch: int, pack_length: int) -> int:
    """The packed row length the attention implementation can separate examples in: flash-attention reads the
    position-id restarts only in a batch of ONE row (transformers' ``_is_packed_sequence``), so with it a batch is a
    single row of the whole budget (varlen kernels: no quadratic cost); every other implementation takes rows of
    ``pack_length`` (``masking_utils.find_packed_sequence_indices`` works per row)."""
    if (attn_implementation or "").startswith("flash_attention"):
        return tokens_per_batch
    return pack_length


def first_fit(lengths: list[int], pack_length: int) -> list[list[int]]:
    """Positions (into ``lengths``) per row: each goes into the first row with room, in order."""
    rows: list[list[int]] = []
    fill: list[int] = []
    for i, n in enumerate(lengths):
        for r, used in enumerate(fill):
            if used + n <= pack_length:
                rows[r].append(i)
                fill[r] += n
                break
        else:
            rows.append([i])
            fill.append(n)
    return rows


def _packed_batches(order: list[int], lengths: list[int], budget: int, pack_length: int) -> list[list[int]]:
    """Cut ``order`` into batches whose first-fit rows number at most ``budget // pack_length``."""
    max_rows = max(budget // pack_length, 1)
    batches, current, fill = [], [], []
    for i in order:
        n = lengths[i]
        row = next((r for r, used in enumerate(fill) if used + n <= pack_length), None)
        if row is None and len(fill) >= max_rows:
            batches.append(current)
            current, fill, row = [], [], None
        if row is None:
            fill.append(n)
        else:
            fill[row] += n
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _padded_cut(order: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive batches of ``order`` with ``len(batch) * longest <= budget`` (one over-long example alone)."""
    batches, current, longest = [], [], 0
    for i in order:
        wider = max(longest, lengths[i])
        if current and (len(current) + 1) * wider > budget:
            batches.append(current)
            current, wider = [], lengths[i]
        current.append(i)
        longest = wider
    if current:
        batches.append(current)
    return batches


def budget_batches(lengths: list[int], tokens_per_batch: int, *, packed: bool, pack_length: int,
                   seed: int | None, bucket: int = 16) -> list[list[int]]:
    """One epoch's batches by token budget; ``seed=None`` keeps the examples' order (validation)."""
    order = list(range(len(lengths)))
    rng = random.Random(seed) if seed is not None else None
    if rng is not None:
        rng.shuffle(order)
    if packed:
        batches = _packed_batches(order, lengths, tokens_per_batch, pack_length)
    elif rng is None:
        batches = _padded_cut(order, lengths, tokens_per_batch)
    else:  # sorted by length inside buckets of about `bucket` budgets' worth of tokens, as length grouping does
        batches, span, used = [], [], 0
        for i in order:
            span.append(i)
            used += lengths[i]
            if used >= bucket * tokens_per_batch:
                batches += _padded_cut(sorted(span, key=lengths.__getitem__), lengths, tokens_per_batch)
                span, used = [], 0
        if span:
            batches += _padded_cut(sorted(span, key=lengths.__getitem__), lengths, tokens_per_batch)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def collate_rows(examples: list[dict], pack_length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Padding-free rows of at most ``pack_length`` tokens (first fit); ``num_tokens`` = the real tokens."""
    rows = first_fit([len(e["input_ids"]) for e in examples], pack_length)
    width = max(sum(len(examples[i]["input_ids"]) for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    order = []
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            e = examples[i]
            n = len(e["input_ids"])
            ids[r, at : at + n] = torch.tensor(e["input_ids"])
            labels[r, at + 1 : at + n] = torch.tensor(e["labels"][1:])  # nothing predicted across a boundary
            positions[r, at : at + n] = torch.arange(n)
            at += n
            order.append(e["index"])
        positions[r, at:] = torch.arange(width - at)  # the pad tail: a sequence of its own
    real = sum(len(e["input_ids"]) for e in examples)
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "index": torch.tensor(order),
            "num_tokens": torch.tensor(real)}


def padding_of(examples: list[dict], batches: list[list[int]], packed: bool, pack_length: int) -> tuple[int, int]:
    """(real tokens, tensor positions) over ``batches``: what the pad fraction is computed from."""
    real = slots = 0
    for b in batches:
        lengths = [len(examples[i]["input_ids"]) for i in b]
        real += sum(lengths)
        if packed:
            rows = first_fit(lengths, pack_length)
            slots += len(rows) * max(sum(lengths[i] for i in row) for row in rows)
        else:
            slots += max(lengths) * len(lengths)
    return real, slots
