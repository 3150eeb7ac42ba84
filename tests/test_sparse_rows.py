"""The row-sparse trainable-tokens forward computes what PEFT's dense forward computes, values and gradients."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

from qwenft.adapters.apply import PeftSpec, apply_peft
from qwenft.adapters.sparse_rows import RowSparseTrainableTokens
from qwenft.model.sources import tiny
from qwenft.tokenizer.extend import extend_model

TEXT = ["The patient took neurogenix for mediventricular pain.", "No new word in this one at all, none."]


def _model(tied: bool, method: str):
    loaded = tiny(tie_word_embeddings=tied)
    ext = extend_model(loaded.model, loaded.tokenizer, ["neurogenix", "mediventricular"], capitalized=True)
    model = apply_peft(loaded.model, PeftSpec(method=method, r=4, alpha=8, dropout=0.0), ext.new_ids, "new_rows")
    with torch.no_grad():  # move the delta rows off their init so that a wrong row would show
        for name, p in model.named_parameters():
            if "trainable_tokens_delta" in name:
                p.add_(torch.randn_like(p))
    return ext, model


def _loss_and_grads(model, batch, labels):
    model.zero_grad()
    loss = model(**batch, labels=labels).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_row_sparse_forward_matches_peft(tied, method):
    ext, model = _model(tied, method)
    layers = [m for m in model.modules() if isinstance(m, TrainableTokensLayer)]
    assert layers and all(type(m) is RowSparseTrainableTokens for m in layers)
    batch = ext.tokenizer(TEXT, return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    assert any(i in ext.new_ids for i in batch.input_ids[0].tolist())

    sparse_loss, sparse_grads = _loss_and_grads(model, batch, labels)
    for m in layers:
        m.__class__ = TrainableTokensLayer  # PEFT's own dense forward, same parameters
    dense_loss, dense_grads = _loss_and_grads(model, batch, labels)

    torch.testing.assert_close(sparse_loss, dense_loss)
    assert sparse_grads.keys() == dense_grads.keys()
    assert any("trainable_tokens_delta" in n for n in sparse_grads)
    for name in dense_grads:
        torch.testing.assert_close(sparse_grads[name], dense_grads[name], msg=name)


def test_batch_without_new_words_still_reaches_the_rows():
    """DDP needs every trainable parameter in the graph each step, even when no new word is in the batch."""
    ext, model = _model(tied=False, method="lora")
    batch = ext.tokenizer(TEXT[1:], return_tensors="pt")
    assert not set(batch.input_ids[0].tolist()) & set(ext.new_ids)
    _, grads = _loss_and_grads(model, batch, batch.input_ids)
    rows = [g for n, g in grads.items() if "embed_tokens" in n and "trainable_tokens_delta" in n]
    assert rows and torch.count_nonzero(rows[0]) == 0


def test_merge_and_disable_fall_back_to_peft():
    ext, model = _model(tied=True, method="lora")
    batch = ext.tokenizer(TEXT[:1], return_tensors="pt")
    with torch.no_grad():
        live = model(**batch).logits
        with model.disable_adapter():
            off = model(**batch).logits
        merged = model.merge_and_unload()(**batch).logits
    assert not torch.allclose(live, off)
    torch.testing.assert_close(merged, live)
