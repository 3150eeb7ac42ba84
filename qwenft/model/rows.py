"""Where the new rows start. A row that starts near the meaning of the word needs fewer steps to be useful.

``mean_subword`` (default): the mean of the rows of the pieces the *original* tokenizer splits the form into,
on the input side and, for untied heads, on the output side -- the model already half-reads the word that way.
``description``: the mean of the rows of a short gloss given with the word (falls back to ``mean_subword``
for words without one). ``adaptivocab`` (AdaptiVocab, arXiv 2503.19693): the input row weighted towards the
last piece (the state the model reads the word from), the output row towards the first (what it writes first),
weights 2^i; a tied model has one row and gets the input weighting. ``distill``: ``adaptivocab``, then token
distillation of the input rows against the original pieces (``qwenft.model.distill``); an untied head keeps the
AdaptiVocab output rows. ``default``: what ``resize_token_embeddings(mean_resizing=True)`` gives, the mean of
all old rows -- unrelated to the word. ``random``: N(0, initializer_range), the pre-2024 transformers default.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from qwenft.errors import UserError
from qwenft.model.row_settings import INITS

log = logging.getLogger(__name__)
STRATEGIES = INITS  # declared once, with the config schema's other row settings


class NewRow(Protocol):
    """What row init needs of a new token (``qwenft.tokenizer.vocab.NewToken`` has it): the model stays
    independent of how the tokenizer was extended."""

    id: int
    word: str
    piece_ids: list[int]


def embeddings_tied(model: PreTrainedModel) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def ensure_rows(model: PreTrainedModel, needed: int, pad_to_multiple_of: int = 64) -> tuple[int, int]:
    """Grow the matrices only when the new ids do not fit Qwen's spare padded rows; never shrink them."""
    rows = model.get_input_embeddings().weight.shape[0]
    if needed <= rows:
        return rows, rows
    target = -(-needed // pad_to_multiple_of) * pad_to_multiple_of
    model.resize_token_embeddings(target, mean_resizing=False)
    return rows, target


@torch.no_grad()
def init_new_rows(
    model: PreTrainedModel,
    new_tokens: list[NewRow],
    strategy: str = "mean_subword",
    glosses: dict[str, str] | None = None,
    base_tokenizer: PreTrainedTokenizerBase | None = None,
    seed: int = 0,
) -> None:
    if strategy not in STRATEGIES:
        raise UserError(f"tokenizer.init={strategy!r}: choose one of {', '.join(STRATEGIES)}")
    emb_in = model.get_input_embeddings().weight
    emb_out = None if embeddings_tied(model) else model.get_output_embeddings().weight
    n_old = min(t.id for t in new_tokens)
    gen = torch.Generator().manual_seed(seed)
    missing_gloss = 0
    for t in new_tokens:
        for emb in [emb_in] if emb_out is None else [emb_in, emb_out]:
            if strategy == "mean_subword":
                emb[t.id] = emb[t.piece_ids].mean(0)
            elif strategy in ("adaptivocab", "distill"):  # distill starts here; the caller learns the input rows
                w = torch.pow(2.0, torch.arange(len(t.piece_ids), dtype=torch.float32))
                w = (w if emb is emb_in else w.flip(0)) / w.sum()  # input: last piece heaviest; output: first
                emb[t.id] = (w[:, None].to(emb.dtype) * emb[t.piece_ids]).sum(0)
            elif strategy == "description":
                gloss = (glosses or {}).get(t.word)
                if gloss and base_tokenizer is not None:
                    ids = base_tokenizer(" " + gloss.strip(), add_special_tokens=False).input_ids
                else:
                    ids = t.piece_ids
                    missing_gloss += emb is emb_in
                emb[t.id] = emb[ids].mean(0)
            elif strategy == "default":
                emb[t.id] = emb[:n_old].mean(0)
            else:
                std = float(getattr(model.config, "initializer_range", 0.02))
                emb[t.id] = (torch.randn(emb.shape[1], generator=gen) * std).to(emb.dtype)
    if missing_gloss:
        log.warning("init=description: %d new forms had no gloss, used mean_subword for them", missing_gloss)
