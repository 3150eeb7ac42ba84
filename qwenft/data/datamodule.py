"""Training data: load and validate everything up front, tokenize once, batch with little padding.

Batches group examples of similar length (sorted inside shuffled buckets), so padding stays small; the pad
fraction is reported. The loader is resumable: its position within the epoch is saved in checkpoints, so a
resumed run sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from qwenft.data.format import IGNORE, encode_example
from qwenft.data.io import LoadResult, load_records
from qwenft.errors import UserError

log = logging.getLogger(__name__)
DEMO_DIR = Path(__file__).resolve().parents[1] / "resources" / "demo"


@dataclass
class Prepared:
    """One split, validated and tokenized."""

    examples: list[dict]
    texts: list[str]  # plain text of the split (held-out text for new-word perplexity)
    source: LoadResult
    overlong: int = 0
    dropped: int = 0
    stats: dict = field(default_factory=dict)


def _records_to_examples(result: LoadResult, strategy: str) -> tuple[list[dict], list[str]]:
    if result.schema == "clinical":
        from qwenft.decomposition.training import to_training_examples

        examples, texts = [], []
        for r in result.records:
            examples += to_training_examples(r, strategy)
            texts.append("\n".join([r["scenario"], r["summary"], *r["answers"]]))
        return examples, texts
    if result.schema == "messages":
        return result.records, [r["messages"][-1]["content"] for r in result.records]
    return result.records, [r["completion"] for r in result.records]


def prepare(path: str | Path, tokenizer, instruct: bool, data_cfg, strategy: str) -> Prepared:
    """Load, validate, format and tokenize one file; over-long examples are truncated or dropped and counted."""
    result = load_records(path, schema=data_cfg.get("schema", "auto"),
                          columns=dict(data_cfg.columns) if data_cfg.get("columns") else None,
                          skip_bad_rows=bool(data_cfg.get("skip_bad_rows", False)))
    records, texts = _records_to_examples(result, strategy)
    max_len, mode = int(data_cfg.max_length), data_cfg.get("overlong", "truncate")
    examples, overlong, dropped = [], 0, 0
    for i, rec in enumerate(records):
        ex = encode_example(tokenizer, rec, instruct)
        if len(ex["input_ids"]) > max_len:
            overlong += 1
            if mode == "drop" or all(lab == IGNORE for lab in ex["labels"][:max_len]):
                dropped += 1  # truncation would leave no completion token to learn from
                continue
            ex = {k: v[:max_len] for k, v in ex.items()}
        ex["index"] = i
        examples.append(ex)
    if overlong:
        log.warning("%s: %d examples longer than data.max_length=%d (%s; %d dropped)", path, overlong, max_len,
                    mode, dropped)
    if not examples:
        raise UserError(f"{path}: no examples left after dropping over-long ones (data.max_length={max_len})")
    return Prepared(examples, texts, result, overlong, dropped,
                    {"examples": len(examples), "overlong": overlong, "dropped": dropped,
                     "skipped_rows": len(result.skipped)})


def collate(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask,
            "index": torch.tensor([e["index"] for e in examples])}


def length_grouped_batches(examples: list[dict], batch_size: int, seed: int, bucket: int = 16) -> list[list[int]]:
    """Shuffle, sort by length inside buckets of ``bucket`` batches, then shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    batches = []
    span = batch_size * bucket
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: len(examples[i]["input_ids"]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


class ResumableLoader:
    """An epoch of length-grouped batches for this rank; ``state_dict`` records how far the epoch got."""

    def __init__(self, examples: list[dict], batch_size: int, pad_id: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:
        self.examples, self.batch_size, self.pad_id, self.seed, self.shuffle = examples, batch_size, pad_id, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.trained, self._resume_at = 0, 0, 0

    def _batches(self) -> list[list[int]]:
        if self.shuffle:
            batches = length_grouped_batches(self.examples, self.batch_size, self.seed + self.epoch)
        else:
            idx = list(range(len(self.examples)))
            batches = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        usable = len(batches) - len(batches) % self.world_size if len(batches) >= self.world_size else len(batches)
        return batches[self.rank : usable : self.world_size]  # disjoint across ranks, same count on each

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self):
        batches = self._batches()
        start, self._resume_at = self._resume_at, 0
        self.trained = start
        for b in batches[start:]:
            yield collate([self.examples[i] for i in b], self.pad_id)
        if self.shuffle:
            self.epoch += 1
        self.trained = 0

    def step_done(self) -> None:
        """Called after each trained batch: the fetcher prefetches, so counting yields would run ahead."""
        self.trained += 1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.trained}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self._resume_at = int(state["epoch"]), int(state["consumed"])
