"""Exports: the merged model reloads with the trained model's logits, tied stays tied, pipelines can load it."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from qwenft.adapters.apply import PeftSpec, apply_peft, param_groups
from qwenft.data.datamodule import collate
from qwenft.data.format import encode_example
from qwenft.model.sources import tiny
from qwenft.tokenizer.extend import extend_model
from qwenft.train.export import export
from qwenft.train.module import label_loss


def _trained(words: list[str], tied: bool, method: str):
    """Tiny + extension + PEFT, a few real optimizer steps so adapters and new rows are no longer at init."""
    loaded = tiny(tie_word_embeddings=tied)
    ext = extend_model(loaded.model, loaded.tokenizer, words, init="mean_subword", glosses={}, capitalized=False,
                       seed=0)
    init_rows = loaded.model.get_input_embeddings().weight[ext.new_ids].detach().clone()
    model = apply_peft(loaded.model, PeftSpec(method=method, r=4, alpha=8, dropout=0.0), ext.new_ids, "new_rows")
    opt = torch.optim.AdamW(param_groups(model, lr=1e-2, rows_lr=1e-1, weight_decay=0.0))
    text = " ".join(words)
    batch = collate([{**encode_example(ext.tokenizer, {"prompt": "Define:", "completion": text}, True), "index": 0}],
                    ext.tokenizer.pad_token_id)
    model.train()
    for _ in range(3):
        loss, _ = label_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval(), ext, init_rows


@pytest.mark.parametrize("tied,method", [(True, "lora"), (False, "lora"), (True, "full")])
def test_merged_export_reloads_with_identical_logits(tmp_path, demo_words, tied, method):
    model, ext, init_rows = _trained(demo_words, tied, method)
    ids = ext.tokenizer("The patient took " + " then ".join(demo_words), return_tensors="pt").input_ids
    with torch.no_grad():
        before = model(input_ids=ids).logits
    out = export(model, ext.tokenizer, tmp_path, ext.manifest())
    assert ("adapter" in out) == (method == "lora")
    merged = AutoModelForCausalLM.from_pretrained(out["merged"]).eval()
    with torch.no_grad():
        after = merged(input_ids=ids).logits
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)  # merging only reorders float sums
    in_memory = model.get_base_model() if isinstance(model, PeftModel) else model  # merged in place by export
    with torch.no_grad():
        assert torch.equal(in_memory(input_ids=ids).logits, after)  # what was saved is exactly what was merged
    emb, head = merged.get_input_embeddings().weight, merged.get_output_embeddings().weight
    assert (emb.data_ptr() == head.data_ptr()) == tied
    assert not torch.equal(emb[ext.new_ids], init_rows)  # the trained rows were saved, not the init
    if tied:
        assert torch.equal(emb[ext.new_ids], head[ext.new_ids])
    manifest = json.loads((tmp_path / "merged" / "qwenft_vocab.json").read_text())
    assert [t["id"] for t in manifest["new_tokens"]] == ext.new_ids
    tok = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    assert tok(demo_words[0]).input_ids == ext.tokenizer(demo_words[0]).input_ids
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temp folders left behind


def test_pipeline_loads_the_merged_folder(tmp_path, demo_words):
    from transformers import pipeline

    model, ext, _ = _trained(demo_words, True, "lora")
    out = export(model, ext.tokenizer, tmp_path, ext.manifest())
    gen = pipeline("text-generation", model=out["merged"])
    text = gen("The patient took", max_new_tokens=3, do_sample=False)[0]["generated_text"]
    assert text.startswith("The patient took")
