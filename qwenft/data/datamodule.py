"""Training data: load and validate everything up front, tokenize once, batch with little padding.

Every split is loaded and validated (``load_splits``) before a model is, and tokenized (``prepare``) before
``trainer.fit``: a bad row costs seconds, not a run. The tokenized examples stay in memory; epochs only
reshuffle indices, nothing is tokenized twice.

Two ways to waste little compute on padding (the pad fraction is reported either way):

* length grouping (default): batches of examples of similar length (sorted inside shuffled buckets);
* packing (``data.packing=true``): a batch's examples are concatenated into ONE row with no padding at all,
  ``attention_mask`` left out and ``position_ids`` restarting at 0 for each example. Transformers 5 reads the
  restarts as sequence boundaries and builds a block-diagonal causal mask, so no example attends to another
  (``tests/test_train.py`` checks packed per-token losses equal per-example ones). On CPU the mask is dense,
  so attention over a packed row costs more than over grouped rows: grouping is the default here.

Either way a step sees ``data.batch_size`` examples, so step counts and learning rates mean the same thing --
unless ``data.tokens_per_batch`` is set: then a step carries about that many tokens, packed into rows of at most
``data.pack_length`` or padded, however many examples that is (``qwenft.data.packing``; meant for GPUs).
``data.packing=auto`` packs when the run trains on raw text (its windows vary from a few tokens to
``max_length``) and groups by length otherwise.

Raw text (schema ``text``: ``.txt`` files, a ``text`` column) trains on every token; each document ends with
``<|endoftext|>`` and a document longer than ``data.max_length`` becomes consecutive windows, counted as
``windowed`` documents and ``windows`` in the split's stats and ``data/<split>_windowed`` in the metrics.
``data.text_path`` adds a raw-text file to an instruction training file in the same run (mixed); the two are
one training split, shuffled together.
The loader is resumable: its position within the epoch is saved in checkpoints, so a resumed run sees exactly
the batches an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from qwenft.data.format import IGNORE, encode_example, encode_text, text_windows
from qwenft.data.io import LoadResult, load_records
from qwenft.data.packing import budget_batches, collate_rows, padding_of, row_length
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


def split_paths(data_cfg) -> dict[str, str | Path | None]:
    """``data.{train,val,test}_path``; with no train path at all, the bundled demo splits.

    A path is a local file or folder, or what ``datasets.load_dataset`` reads (a Hub dataset id,
    ``hf://datasets/...``): kept as the string given, since ``Path`` would fold ``hf://`` into ``hf:/``.
    """
    d = data_cfg
    demo = not d.get("train_path")
    return {"train": str(d.train_path) if not demo else DEMO_DIR / "train.jsonl",
            "val": str(d.val_path) if d.get("val_path") else (DEMO_DIR / "val.jsonl" if demo else None),
            "test": str(d.test_path) if d.get("test_path") else (DEMO_DIR / "test.jsonl" if demo else None)}


def _load(path: str | Path, data_cfg, schema: str | None = None, split: str = "train") -> LoadResult:
    files = data_cfg.get("data_files")
    return load_records(path, schema=schema or data_cfg.get("schema", "auto"),
                        columns=dict(data_cfg.columns) if data_cfg.get("columns") else None,
                        skip_bad_rows=bool(data_cfg.get("skip_bad_rows", False)),
                        max_chars=data_cfg.get("max_chars"), text_unit=data_cfg.get("text_unit") or "line",
                        split=split, data_files=OmegaConf.to_container(files) if OmegaConf.is_config(files) else files)


def mixed(first: LoadResult, text: LoadResult) -> LoadResult:
    """One training split from an instruction file and a raw-text file (``data.text_path``).

    The records keep their own shapes (a raw-text record is ``{"text": ...}``); the hash covers both files, so
    a run record and a resume check see a change in either.
    """
    digest = hashlib.sha256(f"{first.sha256}+{text.sha256}".encode()).hexdigest()
    return LoadResult(records=first.records + text.records, schema=f"{first.schema}+{text.schema}",
                      path=f"{first.path}+{text.path}", sha256=digest, skipped=first.skipped + text.skipped)


def load_splits(data_cfg) -> dict[str, LoadResult]:
    """Every configured split, loaded and validated (``DataError`` = ``file:line: problem`` on the first bad row).

    ``data.text_path`` (raw text) joins the training split of ``data.train_path``.
    """
    splits = {name: _load(p, data_cfg, split=name) for name, p in split_paths(data_cfg).items() if p is not None}
    if data_cfg.get("text_path"):
        if not data_cfg.get("train_path"):
            raise UserError("data.text_path is set but data.train_path is not: put the raw text in data.train_path "
                            "(a raw-text run) or set data.train_path to the instruction data to mix it with")
        splits["train"] = mixed(splits["train"], _load(data_cfg.text_path, data_cfg, schema="text"))
    return splits


def _records_to_examples(result: LoadResult, strategy: str) -> tuple[list[dict], list[str]]:
    """Training examples and the plain text of a split; each record by its own shape (a split may be mixed)."""
    examples, texts = [], []
    for r in result.records:
        if "text" in r:  # raw text: trained on every token
            examples.append(r)
            texts.append(r["text"])
        elif "scenario" in r:
            from qwenft.data.decompose import to_training_examples

            examples += to_training_examples(r, strategy)
            texts.append("\n".join([r["scenario"], r["summary"], *r["answers"]]))
        elif "messages" in r:
            examples.append(r)
            texts.append(r["messages"][-1]["content"])
        else:
            examples.append(r)
            texts.append(r["completion"])
    return examples, texts


def split_texts(result: LoadResult, strategy: str) -> list[str]:
    """The plain text of a split (word discovery reads it before any tokenizer change)."""
    return _records_to_examples(result, strategy)[1]


def prepare(source: LoadResult | str | Path, tokenizer, instruct: bool, data_cfg, strategy: str) -> Prepared:
    """Format and tokenize one split; over-long examples are truncated or dropped, over-long raw-text documents
    cut into windows; all of it counted in the log and the stats."""
    result = source if isinstance(source, LoadResult) else _load(source, data_cfg)
    records, texts = _records_to_examples(result, strategy)
    max_len, mode = int(data_cfg.max_length), data_cfg.get("overlong", "truncate")  # rules: qwenft.data.schema
    examples, overlong, dropped, merged, documents, windowed, windows = [], 0, 0, 0, 0, 0, 0
    for rec in records:
        if "text" in rec:
            parts = text_windows(encode_text(tokenizer, rec["text"]), max_len)
            documents, windowed, windows = documents + 1, windowed + (len(parts) > 1), windows + len(parts)
            for ex in parts:
                ex["index"] = len(examples)
                examples.append(ex)
            continue
        ex = encode_example(tokenizer, rec, instruct)
        merged += ex.pop("boundary_merged")
        if len(ex["input_ids"]) > max_len:
            overlong += 1
            if mode == "drop" or all(lab == IGNORE for lab in ex["labels"][:max_len]):
                dropped += 1  # truncation would leave no completion token to learn from
                continue
            ex = {k: v[:max_len] for k, v in ex.items()}
        ex["index"] = len(examples)  # unique per example (a clinical record or a long document gives several)
        examples.append(ex)
    if overlong:
        log.warning("%s: %d of %d examples longer than data.max_length=%d (%s; %d dropped)", result.path, overlong,
                    len(records) - documents, max_len, mode, dropped)
    if documents:
        log.info("%s: %d raw-text documents -> %d windows of at most %d tokens (%d documents longer, cut into "
                 "windows, nothing truncated)", result.path, documents, windows, max_len, windowed)
    if merged:
        log.warning("%s: %d completions start with a newline; their first tokens differ from a tokenization of the "
                    "full text (trained as generation sees them: prompt tokens, then completion tokens)",
                    result.path, merged)
    if not examples:
        raise UserError(f"{result.path}: no examples left after dropping over-long ones (data.max_length={max_len})")
    lengths = [len(e["input_ids"]) for e in examples]
    return Prepared(examples, texts, result, overlong, dropped,
                    {"records": len(result.records), "examples": len(examples), "overlong": overlong,
                     "dropped": dropped, "boundary_merged": merged, "skipped_rows": len(result.skipped),
                     "tokens": sum(lengths), "max_tokens": max(lengths), "documents": documents,
                     "windowed": windowed, "windows": windows})


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


def collate_packed(examples: list[dict]) -> dict[str, torch.Tensor]:
    """One padding-free row; each example's first label is IGNORE so nothing is predicted across a boundary."""
    ids, labels, positions = [], [], []
    for e in examples:
        n = len(e["input_ids"])
        ids += e["input_ids"]
        labels += [IGNORE, *e["labels"][1:]]
        positions += range(n)
    return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]), "index": torch.tensor([e["index"] for e in examples])}


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
    """An epoch of length-grouped batches for this rank; ``state_dict`` records how far the epoch got.

    Lightning saves a train loader's ``state_dict`` in checkpoints and hands it back on resume, which is why this
    is not a ``DataLoader``: a sampler cannot say which batches of a shuffled epoch were already trained on.
    """

    def __init__(self, examples: list[dict], batch_size: int, pad_id: int, seed: int, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, packing: bool = False, tokens_per_batch: int | None = None,
                 pack_length: int | None = None) -> None:
        self.examples, self.batch_size, self.pad_id = examples, batch_size, pad_id
        self.seed, self.shuffle = seed, shuffle
        self.packing = packing
        # data.tokens_per_batch: batches by token count (qwenft.data.packing); packed rows at most pack_length long
        self.tokens_per_batch = tokens_per_batch
        self.pack_length = pack_length or max(len(e["input_ids"]) for e in examples)
        self.rank, self.world_size = rank, world_size
        self.epoch, self.trained, self._resume_at = 0, 0, 0

    def _batches(self) -> list[list[int]]:
        if self.tokens_per_batch:
            batches = budget_batches([len(e["input_ids"]) for e in self.examples], self.tokens_per_batch,
                                     packed=self.packing, pack_length=self.pack_length,
                                     seed=self.seed + self.epoch if self.shuffle else None)
        elif self.shuffle:
            batches = length_grouped_batches(self.examples, self.batch_size, self.seed + self.epoch)
        else:
            idx = list(range(len(self.examples)))
            batches = [idx[i : i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        usable = len(batches) - len(batches) % self.world_size if len(batches) >= self.world_size else len(batches)
        return batches[self.rank : usable : self.world_size]  # disjoint across ranks, same count on each

    def __len__(self) -> int:
        return len(self._batches())

    def pad_fraction(self) -> float:
        """The share of padding positions over this epoch's batches (0 when packing)."""
        if self.tokens_per_batch:
            real, slots = padding_of(self.examples, self._batches(), self.packing, self.pack_length)
            return 1.0 - real / slots if slots else 0.0
        if self.packing:
            return 0.0
        real = padded = 0
        for b in self._batches():
            lengths = [len(self.examples[i]["input_ids"]) for i in b]
            real, padded = real + sum(lengths), padded + max(lengths) * len(lengths)
        return 1.0 - real / padded if padded else 0.0

    def __iter__(self):
        batches = self._batches()
        start, self._resume_at = self._resume_at, 0
        self.trained = start
        for b in batches[start:]:
            chosen = [self.examples[i] for i in b]
            if self.packing and self.tokens_per_batch:
                yield collate_rows(chosen, self.pack_length, self.pad_id)
            else:
                yield collate_packed(chosen) if self.packing else collate(chosen, self.pad_id)
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


class TrainData(pl.LightningDataModule):
    """The prepared splits, served per rank.

    A run builds it with ``connect`` from its ``data`` config, the splits its preflight read and checked (before any
    model loads) and the run's tokenizer, which tokenizes every split. ``setup`` only decides which rank reads which
    batches, which is known once the trainer has set up its strategy.
    """

    def __init__(self, train: Prepared, val: Prepared | None, *, batch_size: int, pad_id: int, seed: int,
                 packing: bool | str = False, max_val_examples: int | None = None, test: Prepared | None = None,
                 tokens_per_batch: int | None = None, pack_length: int | None = None) -> None:
        super().__init__()
        if packing == "auto":  # raw text: windows from a few tokens to max_length pack with no padding at all
            packing = bool(train.stats.get("documents"))
        self.train_set, self.val_set, self.test_set = train, val, test
        self.batch_size, self.pad_id, self.seed, self.packing = batch_size, pad_id, seed, packing
        self.tokens_per_batch, self.pack_length = tokens_per_batch, pack_length
        self.val_examples = (val.examples[:max_val_examples] if max_val_examples else val.examples) if val else []
        # the test split, scored once after fit (trainer.test): held-out examples capped like validation's
        self.test_examples = (test.examples[:max_val_examples] if max_val_examples else test.examples) if test else []
        self.train_loader: ResumableLoader | None = None
        self.val_loader: ResumableLoader | None = None
        self.test_loader: ResumableLoader | None = None

    @classmethod
    def connect(cls, data_cfg: DictConfig, sources: dict[str, LoadResult], tokenizer, *, instruct: bool,
                strategy: str, seed: int, attn_implementation: str | None = None) -> TrainData:
        """The data module of a run, from its ``data`` config, the splits read in preflight and the run's tokenizer
        (LitGPT's ``connect(tokenizer)``): every split tokenized and served as ``data_cfg`` says (packing, batch
        sizes, packed row length for the model's attention), so the training loop only asks for it."""
        sets = {k: prepare(sources[k], tokenizer, instruct, data_cfg, strategy) if k in sources else None
                for k in ("train", "val", "test")}
        pack_length = data_cfg.get("pack_length") or data_cfg.max_length
        if data_cfg.get("tokens_per_batch"):
            rows = row_length(attn_implementation, data_cfg.tokens_per_batch, pack_length)
            if rows != pack_length:
                log.info("attention %s separates packed examples only in single-row batches: packed rows of "
                         "data.tokens_per_batch=%d tokens instead of data.pack_length=%d", attn_implementation, rows,
                         pack_length)
            pack_length = rows
        return cls(sets["train"], sets["val"], batch_size=data_cfg.batch_size, pad_id=tokenizer.pad_token_id,
                   seed=seed, packing=data_cfg.get("packing", False), max_val_examples=data_cfg.max_val_examples,
                   test=sets["test"], tokens_per_batch=data_cfg.get("tokens_per_batch"), pack_length=pack_length)

    def setup(self, stage: str | None = None) -> None:
        if self.train_loader is not None:  # validate-then-fit calls setup twice: keep the loaders (and their state)
            return
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        budget = {"tokens_per_batch": self.tokens_per_batch, "pack_length": self.pack_length}
        self.train_loader = ResumableLoader(self.train_set.examples, self.batch_size, self.pad_id, self.seed,
                                            rank=rank, world_size=world, packing=self.packing, **budget)
        if self.val_examples:
            self.val_loader = ResumableLoader(self.val_examples, self.batch_size, self.pad_id, self.seed,
                                              shuffle=False, rank=rank, world_size=world, packing=self.packing,
                                              **budget)
        if self.test_examples:
            self.test_loader = ResumableLoader(self.test_examples, self.batch_size, self.pad_id, self.seed,
                                               shuffle=False, rank=rank, world_size=world, packing=self.packing,
                                               **budget)
        log.info("train: %d examples, %d batches/epoch on rank %d, pad fraction %.3f%s%s", len(self.train_set.examples),
                 len(self.train_loader), rank, self.train_loader.pad_fraction(), " (packed)" if self.packing else "",
                 f", batches of <= {self.tokens_per_batch} tokens" if self.tokens_per_batch else "")

    def train_dataloader(self) -> ResumableLoader:
        return self.train_loader

    def val_dataloader(self) -> ResumableLoader | list:
        return self.val_loader if self.val_loader is not None else []

    def test_dataloader(self) -> ResumableLoader | list:
        return self.test_loader if self.test_loader is not None else []

    def step_done(self) -> None:
        if self.train_loader is not None:
            self.train_loader.step_done()
