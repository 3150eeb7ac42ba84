"""Vocabulary extension on the real Qwen2.5 tokenizer: one token per word, nothing else changes."""

from __future__ import annotations

import gzip
import json
import unicodedata
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qwenft.errors import UserError
from qwenft.model.qwen_tokenizer import qwen25_tokenizer
from qwenft.model.rows import ensure_rows
from qwenft.model.sources import tiny
from qwenft.tokenizer.extend import extend_model
from qwenft.tokenizer.vocab import extend_tokenizer, normalise_words

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDS = ["neurogenix", "mediventricular", "cardiofloxin", "IL-6x"]


@pytest.fixture(scope="module")
def base():
    return qwen25_tokenizer()


@pytest.fixture(scope="module")
def extended(base):
    words, _ = normalise_words(WORDS, base, capitalized=True)
    return extend_tokenizer(base, words)


CONTEXTS = [
    ("I took {w} daily.", "after a space"),
    ("{w} works", "start of text"),
    ("line one\n{w} again", "after a newline"),
    ("dose ({w}) given", "after a bracket"),
    ("x,{w}", "after punctuation"),
    ('said "{w}"', "after a quote"),
    ("anti-{w}", "after a hyphen"),
    ("  {w}", "after two spaces"),
    ("[{w}]", "in brackets"),
    ("{w}'s effect", "before a contraction"),
]


@pytest.mark.parametrize("template,where", CONTEXTS)
@pytest.mark.parametrize("word", ["neurogenix", "Mediventricular", "IL-6x"])
def test_each_word_is_one_token_everywhere(extended, base, template, where, word):
    tok, new = extended
    new_ids = {t.id for t in new}
    text = template.format(w=word)
    ids = tok(text, add_special_tokens=False).input_ids
    hits = [i for i in ids if i in new_ids]
    assert len(hits) == 1, f"{where}: {tok.convert_ids_to_tokens(ids)}"
    assert tok.decode(hits).strip() == word
    # no stray space token: around the word, the text tokenizes exactly as it does on its own
    k = ids.index(hits[0])
    form = tok.decode(hits)
    start = text.index(word) - (len(form) - len(word))
    assert ids[:k] == base(text[:start], add_special_tokens=False).input_ids
    assert ids[k + 1 :] == base(text[start + len(form) :], add_special_tokens=False).input_ids
    assert tok.decode(ids) == text


def test_naive_add_tokens_leaves_a_stray_space(base):
    """The bug qwenft exists to fix, measured on the real tokenizer."""
    from transformers import AutoTokenizer

    naive = AutoTokenizer.from_pretrained(_saved(base))
    naive.add_tokens(["neurogenix"])
    tokens = naive.convert_ids_to_tokens(naive("He took neurogenix", add_special_tokens=False).input_ids)
    assert tokens == ["He", "Ġtook", "Ġ", "neurogenix"]


def _saved(tok) -> str:
    import tempfile

    d = tempfile.mkdtemp()
    tok.save_pretrained(d)
    return d


def test_ids_follow_the_vocabulary_and_forms_are_recorded(extended):
    tok, new = extended
    assert [t.id for t in new] == list(range(151665, 151665 + len(new)))
    assert len(tok) == 151665 + len(new)
    first = new[0]
    assert first.form == " neurogenix" and tok.convert_ids_to_tokens(first.id) == " neurogenix"
    assert first.pieces == ["Ġneuro", "gen", "ix"]
    # special tokens keep their ids after the round trip through tokenizer.json
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645
    assert tok("<|im_start|>user\nneurogenix<|im_end|>").input_ids[0] == 151644


def test_text_without_new_words_is_unchanged_on_all_medquad(base, extended):
    path = DATA / "medquad.jsonl.gz"
    if not path.exists():
        pytest.skip("../shared/data not present")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        texts = [(r := json.loads(line))["question"] + "\n" + r["answer"] for line in f]
    tok, _ = extended
    assert not any(w in t for t in texts for w in ("neurogenix", "mediventricular", "cardiofloxin"))
    before = base(texts, add_special_tokens=False).input_ids
    after = tok(texts, add_special_tokens=False).input_ids
    changed = sum(a != b for a, b in zip(before, after, strict=True))
    assert len(texts) == 16407 and changed == 0


def test_words_inside_longer_words_are_left_alone(base, extended):
    tok, _ = extended
    for text in ["neurogenixes", "xneurogenix", "(neurogenixes)", "antineurogenix", "mediventricularly\n"]:
        assert tok(text).input_ids == base(text).input_ids, text


def test_known_limit_after_a_space_a_longer_word_keeps_the_new_word_as_prefix(base, extended):
    """The with-space form cannot look ahead: documented in qwenft/tokenizer/vocab.py."""
    tok, new = extended
    ids = tok("He took neurogenixes", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(ids)[-2:] == [" neurogenix", "es"]


def test_reloads_in_plain_transformers_with_the_same_ids(tmp_path, extended):
    """AutoTokenizer rebuilds Qwen2 tokenizers from vocab + merges when a qwen2 config.json sits beside them."""
    from transformers import AutoTokenizer

    tok, _ = extended
    tiny().model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    texts = [template.format(w=w) for template, _ in CONTEXTS for w in WORDS] + ["plain text (no new words)"]
    assert again(texts).input_ids == tok(texts).input_ids
    assert len(again) == len(tok)


_alphabet = st.sampled_from(
    ["neurogenix", "Neurogenix", "mediventricular", "IL-6x", " ", "\n", "(", ")", ".", ",", "'s", "-", "é",
     "the", "dose", "7", "ü", "😀", "\t", "<|im_end|>", "neurogenixes", "\u0301"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_alphabet, max_size=25).map("".join))
def test_decode_encode_round_trip(extended, text):
    tok, _ = extended
    text = unicodedata.normalize("NFC", text)  # Qwen2.5 normalises to NFC, so only NFC text can round-trip
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text


@pytest.mark.parametrize(
    "word,message",
    [("", "empty"), ("two words", "whitespace"), ("<|im_start|>", "special token"), ("bad\x07", "control"),
     ("123abc", "start with a letter")],
)
def test_bad_words_are_rejected_with_a_reason(base, word, message):
    with pytest.raises(UserError, match=message):
        normalise_words([word], base)


def test_duplicates_and_single_tokens_are_dropped_with_notes(base):
    kept, notes = normalise_words(["neurogenix", "neurogenix", "the"], base)
    assert kept == ["neurogenix"]
    assert any("duplicate" in n for n in notes) and any("single token" in n for n in notes)


def test_spare_rows_are_reused_growth_is_padded_and_never_shrinks():
    loaded = tiny()
    ext = extend_model(loaded.model, loaded.tokenizer, ["neurogenix"])
    assert ext.rows_before == ext.rows_after == 151936  # 271 spare padded rows hold the new ids
    words = [f"zq{chr(97 + i // 26)}{chr(97 + i % 26)}vextra" for i in range(150)]  # 300 forms > 271 spare
    loaded = tiny()
    ext = extend_model(loaded.model, loaded.tokenizer, words)
    assert max(ext.new_ids) >= 151936
    assert ext.rows_after % 64 == 0 and ext.rows_after > max(ext.new_ids) and ext.rows_after < 151936 + 64 + 64
    assert loaded.model.get_output_embeddings().weight.shape[0] == ext.rows_after
    assert ext.tied
    assert ensure_rows(loaded.model, 10) == (ext.rows_after, ext.rows_after)  # asking for fewer never shrinks


@pytest.mark.parametrize("tied", [True, False])
def test_init_strategies(tied):
    loaded = tiny(tie_word_embeddings=tied)
    emb_in = loaded.model.get_input_embeddings().weight.detach().clone()
    emb_out = loaded.model.get_output_embeddings().weight.detach().clone()
    base = loaded.tokenizer
    glosses = {"neurogenix": "a drug that grows nerve cells"}
    ext = extend_model(loaded.model, base, ["neurogenix", "mediventricular"], init="description", glosses=glosses)
    got_in = loaded.model.get_input_embeddings().weight
    got_out = loaded.model.get_output_embeddings().weight
    gloss_ids = base(" a drug that grows nerve cells", add_special_tokens=False).input_ids
    for t in ext.new_tokens:
        ids = gloss_ids if t.word == "neurogenix" else t.piece_ids  # no gloss: falls back to the pieces
        torch.testing.assert_close(got_in[t.id], emb_in[ids].mean(0), rtol=0, atol=0)
        if not tied:
            torch.testing.assert_close(got_out[t.id], emb_out[ids].mean(0), rtol=0, atol=0)
    loaded = tiny(tie_word_embeddings=tied)
    ext = extend_model(loaded.model, loaded.tokenizer, ["neurogenix"], init="mean_subword")
    for t in ext.new_tokens:
        assert torch.equal(loaded.model.get_input_embeddings().weight[t.id], emb_in[t.piece_ids].mean(0))
        assert torch.equal(loaded.model.get_output_embeddings().weight[t.id],
                           (emb_in if tied else emb_out)[t.piece_ids].mean(0))
    loaded = tiny(tie_word_embeddings=tied)
    ext = extend_model(loaded.model, loaded.tokenizer, ["neurogenix"], init="default")
    assert torch.allclose(loaded.model.get_input_embeddings().weight[ext.new_ids[0]], emb_in[:151665].mean(0))
    loaded = tiny(tie_word_embeddings=tied)
    ext = extend_model(loaded.model, loaded.tokenizer, ["neurogenix"], init="random")
    row = loaded.model.get_input_embeddings().weight[ext.new_ids[0]]
    assert 0.01 < float(row.std()) < 0.04  # N(0, initializer_range=0.02)
    with pytest.raises(UserError, match="choose one of"):
        extend_model(tiny().model, tiny().tokenizer, ["neurogenix"], init="bogus")
