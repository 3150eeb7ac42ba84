"""Trainable-rows policies: under new_rows only the new rows move; tied stays tied through merge -> reload."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from qwenft.adapters.apply import PeftSpec, apply_peft, merged_model, param_groups
from qwenft.model.sources import tiny
from qwenft.tokenizer.extend import extend_model

TEXT = ["The patient took neurogenix for mediventricular pain.", "Neurogenix was stopped; mediventricular fibrosis"]


def _train(tied: bool, method: str, policy: str, steps: int = 3):
    loaded = tiny(tie_word_embeddings=tied)
    ext = extend_model(loaded.model, loaded.tokenizer, ["neurogenix", "mediventricular"], capitalized=True)
    before_in = loaded.model.get_input_embeddings().weight.detach().clone()
    before_out = loaded.model.get_output_embeddings().weight.detach().clone()
    model = apply_peft(loaded.model, PeftSpec(method=method, r=4, alpha=8), ext.new_ids, policy)
    # weight decay on: a policy that let decay touch frozen rows would fail the bit-identity check
    opt = torch.optim.AdamW(param_groups(model, lr=1e-3, rows_lr=1e-2, weight_decay=0.1))
    batch = ext.tokenizer(TEXT, return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    for _ in range(steps):
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    return ext, model, before_in, before_out, batch


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_new_rows_policy_moves_only_new_rows(tied, method):
    ext, model, before_in, before_out, _ = _train(tied, method, "new_rows")
    merged = merged_model(model)
    emb_in = merged.get_input_embeddings().weight
    emb_out = merged.get_output_embeddings().weight
    new = torch.tensor(ext.new_ids)
    old = torch.ones(emb_in.shape[0], dtype=torch.bool)
    old[new] = False
    assert torch.equal(emb_in[old], before_in[old])  # bit-identical
    assert torch.equal(emb_out[old], before_out[old])
    assert not torch.equal(emb_in[new], before_in[new])
    assert not torch.equal(emb_out[new], before_out[new])  # the head's new rows train too (tied or not)
    assert (emb_in.data_ptr() == emb_out.data_ptr()) == tied


@pytest.mark.parametrize("method", ["lora", "full"])
def test_output_rows_policy_trains_the_heads_new_rows_and_keeps_the_input_rows(method):
    ext, model, before_in, before_out, _ = _train(False, method, "output_rows")
    merged = merged_model(model)
    emb_in, emb_out = merged.get_input_embeddings().weight, merged.get_output_embeddings().weight
    new = torch.tensor(ext.new_ids)
    old = torch.ones(emb_in.shape[0], dtype=torch.bool)
    old[new] = False
    assert torch.equal(emb_in, before_in)  # every input row as initialised, the new ones included
    assert torch.equal(emb_out[old], before_out[old])
    assert not torch.equal(emb_out[new], before_out[new])


def test_output_rows_on_a_tied_model_trains_no_row_and_says_so(caplog):
    with caplog.at_level("WARNING", logger="qwenft.adapters.apply"):
        ext, model, before_in, _, _ = _train(True, "lora", "output_rows")
    assert torch.equal(merged_model(model).get_input_embeddings().weight, before_in)
    assert "output_rows on a tied model" in caplog.text


def test_frozen_policy_is_the_naive_recipe_rows_never_train():
    ext, model, before_in, _, _ = _train(True, "lora", "frozen")
    emb = merged_model(model).get_input_embeddings().weight
    assert torch.equal(emb, before_in)


def test_all_policy_trains_the_whole_matrix():
    ext, model, before_in, _, _ = _train(True, "lora", "all")
    emb = merged_model(model).get_input_embeddings().weight
    old = [i for i in range(1000)]
    assert not torch.equal(emb[ext.new_ids], before_in[ext.new_ids])
    assert not torch.equal(emb[old], before_in[old])


def test_rows_get_their_own_learning_rate():
    loaded = tiny()
    ext = extend_model(loaded.model, loaded.tokenizer, ["neurogenix"])
    model = apply_peft(loaded.model, PeftSpec(), ext.new_ids, "new_rows")
    groups = {g["name"]: g for g in param_groups(model, lr=1e-4, rows_lr=5e-3, weight_decay=0.01)}
    assert groups["rows"]["lr"] == 5e-3 and groups["rows"]["weight_decay"] == 0.0
    assert groups["body"]["lr"] == 1e-4
    assert sum(p.numel() for p in groups["rows"]["params"]) == len(ext.new_ids) * 64


@pytest.mark.parametrize("tied", [True, False])
def test_train_merge_save_reload_keeps_trained_rows_and_tying(tmp_path, tied):
    ext, model, before_in, _, batch = _train(tied, "lora", "new_rows")
    merged = merged_model(model).eval()
    trained_rows = merged.get_input_embeddings().weight[ext.new_ids].detach().clone()
    merged.save_pretrained(tmp_path, safe_serialization=True)
    ext.tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok(TEXT).input_ids == ext.tokenizer(TEXT).input_ids
    w_in = reloaded.get_input_embeddings().weight
    w_out = reloaded.get_output_embeddings().weight
    assert (w_in.data_ptr() == w_out.data_ptr()) == tied
    assert torch.equal(w_in[ext.new_ids], trained_rows)
    assert not torch.equal(w_in[ext.new_ids], before_in[ext.new_ids])
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, merged(**batch).logits)
