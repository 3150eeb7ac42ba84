"""``tokenizer.init=distill``: only the new rows learn, and they learn to behave like the original pieces.

Run on the tiny random Qwen2 (real tokenizer, 151 936 rows) with a tied head (as Qwen2.5-0.5B on the hub) and an
untied one (as the offline stand-in). The real-weights numbers are in ``experiments/results/newword_real``.
"""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from qwenft.config import compose
from qwenft.model.distill import DistillSettings, align, text_snippets, written_snippets
from qwenft.model.rows import embeddings_tied
from qwenft.tokenizer.extend import extend_model

WORDS = ["neurogenix", "cardiofluxin"]
TEXTS = [
    "The patient took neurogenix twice daily and the cardiofluxin dose was halved after a week.",
    "After neurogenix was stopped, the rash faded. Cardiofluxin slows the heart; cardiofluxin and neurogenix "
    "interact, so neurogenix is given in the morning.",
    "What is neurogenix? Neurogenix is a medicine for seizures, taken with food.",
    "A patient asks about cardiofluxin. What is cardiofluxin? It is a drug that lowers the heart rate.",
] * 3
SETTINGS = DistillSettings(snippets_per_word=8, epochs=3, batch_size=4, lr=5e-3, generated_tokens=8)


def load(tied: bool):
    return instantiate(compose("train", ["model=tiny", f"model.tie_word_embeddings={str(tied).lower()}"]).model)


def mismatch(model, base, extended, texts: list[str], new_ids: set[int]) -> float:
    """Mean squared difference of the final hidden states, new tokens vs original pieces (aligned)."""
    total, n = 0.0, 0
    with torch.no_grad():
        for text in texts:
            pair = align(text, base, extended, new_ids)
            if pair is None:
                continue
            t = model.base_model(input_ids=torch.tensor([pair.teacher_ids])).last_hidden_state[0]
            s = model.base_model(input_ids=torch.tensor([pair.student_ids])).last_hidden_state[0]
            j = torch.arange(pair.first_new, len(pair.student_ids))
            total += float((s[j] - t[torch.tensor(pair.student_to_teacher)[j]]).pow(2).sum())
            n += len(j)
    return total / n


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_distill_changes_only_the_new_rows_and_brings_them_closer_to_the_pieces(tied: bool) -> None:
    ref = load(tied)  # where distillation starts: the AdaptiVocab rows
    ref_ext = extend_model(ref.model, ref.tokenizer, WORDS, init="adaptivocab")
    loaded = load(tied)
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    ext = extend_model(loaded.model, loaded.tokenizer, WORDS, init="distill", texts=TEXTS, distill=SETTINGS)
    new = ext.new_ids
    assert ext.distill["snippets"] > 0 and ext.manifest()["distill"]["steps"] > 0
    assert embeddings_tied(loaded.model) is tied  # a tied model stays tied: one shared row per new token
    for name, p in loaded.model.named_parameters():
        old = before[name]
        if p.shape[0] == old.shape[0] and p.dim() == 2 and p.shape[0] > max(new):  # embeddings / head
            rest = torch.ones(p.shape[0], dtype=torch.bool)
            rest[new] = False
            assert torch.equal(p[rest], old[rest]), f"{name}: an old row changed"
            assert not torch.equal(p[new], old[new]), f"{name}: the new rows did not learn"
        else:
            assert torch.equal(p, old), f"{name} changed"
    if not tied:  # an untied head keeps the AdaptiVocab output rows: only the input rows are distilled
        head = loaded.model.get_output_embeddings().weight
        assert torch.equal(head[new], ref.model.get_output_embeddings().weight[ref_ext.new_ids])
        emb = loaded.model.get_input_embeddings().weight
        assert not torch.equal(emb[new], ref.model.get_input_embeddings().weight[ref_ext.new_ids])
    base_tok = load(tied).tokenizer
    got = mismatch(loaded.model, base_tok, ext.tokenizer, TEXTS[:4], set(new))
    start = mismatch(ref.model, base_tok, ref_ext.tokenizer, TEXTS[:4], set(ref_ext.new_ids))
    assert got < 0.8 * start, (got, start)
    assert ext.distill["hidden_mse_last"] < ext.distill["hidden_mse_first"]


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_the_same_extension_reads_its_rows_from_the_cache_and_any_change_distils_again(tied: bool) -> None:
    from qwenft.model import distill_cache

    def extend(texts=TEXTS, settings=SETTINGS):
        loaded = load(tied)
        ext = extend_model(loaded.model, loaded.tokenizer, WORDS, init="distill", texts=texts, distill=settings)
        return loaded.model.get_input_embeddings().weight[ext.new_ids].detach().clone(), ext.distill

    first, summary = extend()
    assert "cached" not in summary and len(list(distill_cache.root().glob("*.safetensors"))) == 1
    again, cached = extend()
    assert cached["cached"] is True and cached["steps"] == summary["steps"]
    assert torch.equal(again, first)  # the rows a second distillation would have learnt, without the minutes
    other_text, s2 = extend(texts=TEXTS[:4])
    other_lr, s3 = extend(settings=DistillSettings(**{**vars(SETTINGS), "lr": 1e-3}))
    assert "cached" not in s2 and "cached" not in s3
    assert not torch.equal(other_lr, first)
    assert len(list(distill_cache.root().glob("*.safetensors"))) == 3


def test_a_damaged_cache_entry_is_distilled_again() -> None:
    from qwenft.model import distill_cache

    loaded = load(False)
    extend_model(loaded.model, loaded.tokenizer, WORDS, init="distill", texts=TEXTS, distill=SETTINGS)
    (entry,) = distill_cache.root().glob("*.safetensors")
    entry.write_bytes(b"not safetensors")
    loaded = load(False)
    ext = extend_model(loaded.model, loaded.tokenizer, WORDS, init="distill", texts=TEXTS, distill=SETTINGS)
    assert "cached" not in ext.distill and ext.distill["steps"] > 0


def test_words_missing_from_the_text_get_model_written_snippets() -> None:
    loaded = load(True)
    settings = DistillSettings(snippets_per_word=3, generated_tokens=6)
    written = written_snippets(loaded.model, loaded.tokenizer, ["zorbixamab"], 3, settings)["zorbixamab"]
    assert len(written) == 3 and all("zorbixamab" in t for t in written)
    ext = extend_model(loaded.model, loaded.tokenizer, ["zorbixamab"], init="distill", texts=TEXTS, distill=settings)
    assert ext.distill["snippets"] >= 1  # the random tiny model may write text that does not re-tokenize alike


def test_snippets_are_windows_around_occurrences_some_with_the_word_twice() -> None:
    snippets = text_snippets(WORDS, TEXTS, DistillSettings(snippets_per_word=8, chars_before=20, chars_after=20))
    for word, texts in snippets.items():
        assert len(texts) == 8 and all(word.lower() in t.lower() for t in texts)
        assert any(t.lower().count(word) >= 2 for t in texts)  # joined pairs: the word recurs


def test_adaptivocab_weights_the_last_piece_for_reading_and_the_first_for_writing() -> None:
    loaded = load(False)
    emb_in = loaded.model.get_input_embeddings().weight.detach().clone()
    head = loaded.model.get_output_embeddings().weight.detach().clone()
    ext = extend_model(loaded.model, loaded.tokenizer, ["neurogenix"], init="adaptivocab")
    t = ext.new_tokens[0]
    w = torch.pow(2.0, torch.arange(len(t.piece_ids), dtype=torch.float32))
    w = w / w.sum()
    got_in = loaded.model.get_input_embeddings().weight[t.id]
    got_out = loaded.model.get_output_embeddings().weight[t.id]
    torch.testing.assert_close(got_in, (w[:, None] * emb_in[t.piece_ids]).sum(0))
    torch.testing.assert_close(got_out, (w.flip(0)[:, None] * head[t.piece_ids]).sum(0))


def test_train_config_reaches_the_distillation() -> None:
    from omegaconf import OmegaConf

    from qwenft.tokenizer.extend import distill_settings
    from qwenft.validation import validate

    cfg = compose("train", ["model=tiny", "tokenizer.words=[neurogenix]", "tokenizer.init=distill",
                               "tokenizer.distill.snippets_per_word=4"])
    validate(cfg, "train")
    got = distill_settings(cfg.tokenizer, seed=7)
    assert got.snippets_per_word == 4 and got.seed == 7
    assert OmegaConf.select(cfg, "tokenizer.distill.lr") == got.lr
