"""Vocabulary extension on the real Qwen2.5 tokenizer: one token per new word, nothing Qwen knows changes."""

from __future__ import annotations

import gzip
import json
import random
import re
import unicodedata
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken

from qwenft.errors import UserError
from qwenft.model.qwen_tokenizer import qwen25_tokenizer
from qwenft.model.rows import ensure_rows
from qwenft.model.sources import tiny
from qwenft.tokenizer.drift import measure_drift
from qwenft.tokenizer.extend import extend_model
from qwenft.tokenizer.vocab import ADDED, KEPT, SKIPPED, FormReport, extend_tokenizer, normalise_words

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDS = ["neurogenix", "mediventricular", "cardiofloxin", "IL-6x"]
# the issue's list: six of these Qwen already spells as one token after a space (Ġinsulin, ..., Ġneuro)
ISSUE_WORDS = ["insulin", "hepatitis", "diabetes", "pneumonia", "cardiac", "neuro", "warfarin", "metformin"]
KNOWN_AFTER_SPACE = ISSUE_WORDS[:6]


@pytest.fixture(scope="module")
def base():
    return qwen25_tokenizer()


@pytest.fixture(scope="module")
def extended(base):
    words, _ = normalise_words(WORDS + ISSUE_WORDS, capitalized=True)
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
    ("a\t{w}", "after a tab"),
    ("x, {w}.", "after a comma and a space"),
]


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


@pytest.mark.parametrize("template,where", CONTEXTS)
@pytest.mark.parametrize("word", ["neurogenix", "Mediventricular", "IL-6x", "warfarin"])
def test_each_new_word_is_one_token_everywhere(extended, base, template, where, word):
    tok, new, _ = extended
    new_ids = {t.id for t in new}
    text = template.format(w=word)
    ids = _ids(tok, text)
    hits = [i for i in ids if i in new_ids]
    assert len(hits) == 1, f"{where}: {tok.convert_ids_to_tokens(ids)}"
    assert tok.decode(hits).strip() == word
    # no stray space token: around the word, the text tokenizes exactly as it does on its own
    k = ids.index(hits[0])
    form = tok.decode(hits)
    start = text.index(word) - (len(form) - len(word))
    assert ids[:k] == _ids(base, text[:start])
    assert ids[k + 1 :] == _ids(base, text[start + len(form) :])
    assert tok.decode(ids) == text


@pytest.mark.parametrize("template,where", CONTEXTS)
@pytest.mark.parametrize("word", KNOWN_AFTER_SPACE)
def test_words_qwen_knows_after_a_space_keep_every_id(extended, base, template, where, word):
    """``" insulin"`` stays ``Ġinsulin`` everywhere; nothing is added for ``insulin`` that could split it."""
    tok, _, _ = extended
    text = template.format(w=word)
    assert _ids(tok, text) == _ids(base, text), where
    assert _ids(tok, " " + word) == [base.convert_tokens_to_ids("Ġ" + word)]


def test_the_report_says_per_form_what_happened_and_why(base):
    words, _ = normalise_words(["insulin", "warfarin", "pneumon", "the", "neurogenix"])
    _, new, forms = extend_tokenizer(base, words)
    got = {f.form: f for f in forms}
    assert [f.form for f in forms] == [" insulin", "insulin", " warfarin", "warfarin", " pneumon", "pneumon",
                                       " the", "the", " neurogenix", "neurogenix"]
    assert got[" insulin"].status == KEPT and got[" insulin"].id == base.convert_tokens_to_ids("Ġinsulin")
    assert got["insulin"].status == SKIPPED and "would split it into ' ' + 'insulin'" in got["insulin"].reason
    assert got[" warfarin"].status == got["warfarin"].status == ADDED
    assert got[" warfarin"].pieces == ["Ġwar", "far", "in"]
    assert got[" pneumon"].status == SKIPPED and "' pneumonia'" in got[" pneumon"].reason  # Ġpneumonia survives
    assert got["pneumon"].status == SKIPPED
    assert got[" the"].status == got["the"].status == KEPT
    assert [t.form for t in new] == [" warfarin", "warfarin", " neurogenix", "neurogenix"]
    assert [f.id for f in forms if f.status == ADDED] == [t.id for t in new]


def test_a_word_that_begins_known_words_leaves_them_alone(base):
    tok, new, _ = extend_tokenizer(base, ["pneumon", "neurogenix"])
    for text in ["He has pneumonia.", " pneumonic", "pneumonia", "(pneumonia)", "a pneumon b", "pneumon"]:
        assert _ids(tok, text) == _ids(base, text), text
    assert {t.word for t in new} == {"neurogenix"}


@pytest.mark.parametrize("pair", [("neuro", "neurogenix"), ("neurogenix", "neurogenixol")])
def test_prefix_pairs_hold_both_ways(base, pair):
    short, long = pair
    tok, new, forms = extend_tokenizer(base, [long, short])  # order must not matter either
    ids = {f.form: f.id for f in forms if f.id is not None}
    for form in (" " + short, short, " " + long, long):
        if form in ids:
            assert _ids(tok, form) == [ids[form]], form
    for text in [f"a {short} b", f"({short})", f"a {long} b", f"({long})", f"{short}\n{long}", f"{long} {short}"]:
        report = measure_drift([text], base, tok, forms)
        assert report.drifted_texts == 0 and report.kept_changed == 0, (text, report.examples)
        assert report.one_token_after == report.occurrences if short != "neuro" else True
    assert _ids(tok, "took neuro") == _ids(base, "took neuro")  # Ġneuro, not Ġ + neuro
    assert {t.word for t in new} == ({long} if short == "neuro" else {short, long})


def test_naive_add_tokens_leaves_a_stray_space(base):
    """The bug qwenft exists to fix, measured on the real tokenizer."""
    from transformers import AutoTokenizer

    naive = AutoTokenizer.from_pretrained(_saved(base))
    naive.add_tokens(["neurogenix"])
    tokens = naive.convert_ids_to_tokens(naive("He took neurogenix", add_special_tokens=False).input_ids)
    assert tokens == ["He", "Ġtook", "Ġ", "neurogenix"]


def test_the_drift_check_catches_a_bare_form_that_splits_a_known_word(base):
    """The previous recipe (a bare ``single_word`` token for every multi-piece bare form): caught, not excused."""
    bad = _saved(base)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bad)
    tok.add_tokens([AddedToken("insulin", single_word=True, normalized=True)])
    forms = [FormReport("insulin", "insulin", ADDED, "", tok.convert_tokens_to_ids("insulin"))]
    report = measure_drift(["He took insulin.", "(insulin) dose", "no such word"], base, tok, forms)
    assert _ids(tok, " insulin")[0] == base.convert_tokens_to_ids("Ġ")
    assert report.drifted_texts == 1 and report.kept_changed == 1 and report.changed_texts == 2
    assert "inside" in report.examples[0]


def _saved(tok) -> str:
    import tempfile

    d = tempfile.mkdtemp()
    tok.save_pretrained(d)
    return d


def test_ids_follow_the_vocabulary_and_forms_are_recorded(extended):
    tok, new, forms = extended
    assert [t.id for t in new] == list(range(151665, 151665 + len(new)))
    assert len(tok) == 151665 + len(new)
    first = new[0]
    assert first.form == " neurogenix" and tok.convert_ids_to_tokens(first.id) == " neurogenix"
    assert first.pieces == ["Ġneuro", "gen", "ix"]
    # special tokens keep their ids after the round trip through tokenizer.json
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645
    assert tok("<|im_start|>user\nneurogenix<|im_end|>").input_ids[0] == 151644
    assert {f.word for f in forms} == set(normalise_words(WORDS + ISSUE_WORDS, capitalized=True)[0])


def _medquad() -> list[str]:
    path = DATA / "medquad.jsonl.gz"
    if not path.exists():
        pytest.skip("../shared/data not present")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [(r := json.loads(line))["question"] + "\n" + r["answer"] for line in f]


def test_zero_drift_on_the_medquad_answers_that_use_the_issue_words(base, extended):
    """Every MedQuAD text that holds one of the words (the issue's 1 500 were a sample of these)."""
    tok, _, forms = extended
    pattern = re.compile("|".join(ISSUE_WORDS), re.IGNORECASE)
    texts = [t for t in _medquad() if pattern.search(t)]
    report = measure_drift(texts, base, tok, forms)
    assert len(texts) > 1500 and report.occurrences > 4000
    assert report.drifted_texts == 0 and report.kept_changed == 0, report.examples
    assert report.changed_texts > 0  # warfarin, metformin, Insulin...: now one token where Qwen split them
    assert report.one_token_after > report.one_token_before


@pytest.mark.slow
def test_zero_drift_on_all_of_medquad(base, extended):
    tok, _, forms = extended
    texts = _medquad()
    report = measure_drift(texts, base, tok, forms)
    assert report.texts == 16407
    assert report.drifted_texts == 0 and report.kept_changed == 0, report.examples


def test_words_inside_longer_words_are_left_alone(base, extended):
    tok, _, _ = extended
    for text in ["neurogenixes", "xneurogenix", "(neurogenixes)", "antineurogenix", "mediventricularly\n",
                 "proinsulin", " insulinoma", "(neurological)", " neurological", "5neurogenix", "neurogenix5"]:
        assert _ids(tok, text) == _ids(base, text), text


def test_known_limit_after_a_space_a_longer_word_keeps_the_new_word_as_prefix(base, extended):
    """The with-space form cannot look ahead: documented in qwenft/tokenizer/vocab.py, counted by measure_drift."""
    tok, _, forms = extended
    ids = _ids(tok, "He took neurogenixes")
    assert tok.convert_ids_to_tokens(ids)[-2:] == [" neurogenix", "es"]
    report = measure_drift(["He took neurogenixes"], base, tok, forms)
    assert report.longer_word_splits == 1 and report.drifted_texts == 0


def test_reloads_in_plain_transformers_with_the_same_ids(tmp_path, extended):
    """AutoTokenizer rebuilds Qwen2 tokenizers from vocab + merges when a qwen2 config.json sits beside them."""
    from transformers import AutoTokenizer

    tok, _, _ = extended
    tiny().model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    texts = [template.format(w=w) for template, _ in CONTEXTS for w in WORDS + ISSUE_WORDS]
    texts += ["plain text (no new words)", "He took neurogenixes", " Insulinoma and pneumonia"]
    assert again(texts).input_ids == tok(texts).input_ids
    assert len(again) == len(tok)


# ------------------------------------------------------------------ property tests against the original tokenizer


def _vocabulary_words(base, seed: int = 0) -> list[str]:
    """Real words from Qwen's vocabulary: ones it knows after a space (``Ġ...``) and bare-only ones."""
    rng = random.Random(seed)
    vocab = base.get_vocab()
    spaced = sorted(k[1:] for k in vocab if re.fullmatch(r"Ġ[a-z]{5,12}", k))
    bare_only = sorted(k for k in vocab if re.fullmatch(r"[a-z]{6,12}", k) and "Ġ" + k not in vocab)
    return rng.sample(spaced, 20) + rng.sample(bare_only, 6)


def _invented_words(seed: int = 0, n: int = 10) -> list[str]:
    rng = random.Random(seed)
    syllables = ["zor", "bix", "quan", "tel", "vry", "mox", "daz", "plin", "xer", "ulf"]
    return ["".join(rng.sample(syllables, 3)) for _ in range(n)]


@pytest.fixture(scope="module")
def pool(base):
    invented = _invented_words()
    prefix_pairs = ["neuro", "neurogenix", invented[0] + "ol", "cardio", "cardiofloxin", "pneumon"]
    words, _ = normalise_words(_vocabulary_words(base) + invented + prefix_pairs + ["IL-6x", "Mediventricular"])
    tok, _, forms = extend_tokenizer(base, words)
    return words, tok, forms


def test_the_pool_covers_every_kind_of_form(pool):
    _, _, forms = pool
    kinds = {(f.space, f.status) for f in forms}
    assert kinds >= {(True, KEPT), (True, ADDED), (False, KEPT), (False, ADDED), (False, SKIPPED)}


def test_a_word_qwen_spells_as_a_lone_space_plus_its_one_token_keeps_that_token(base):
    """``" ichtig"`` is ``Ġ`` + ``ichtig`` in Qwen: the word is already one pretrained token after a space, so the
    space form is skipped (an added one would replace id 34966) -- found by the property test below."""
    vocab = base.get_vocab()
    words = [w for w in sorted(k for k in vocab if re.fullmatch(r"[a-z]{6,12}", k) and "Ġ" + k not in vocab)
             if base.convert_ids_to_tokens(_ids(base, " " + w)) == ["Ġ", w]]
    assert "ichtig" in words
    words = list(dict.fromkeys(words[::max(1, len(words) // 40)] + ["ichtig"]))
    tok, new_tokens, forms = extend_tokenizer(base, words + ["neurogenix"])
    by_form = {f.form: f for f in forms}
    for w in words:
        assert by_form[" " + w].status == SKIPPED and "already one pretrained token" in by_form[" " + w].reason
        assert by_form[w].status == KEPT
        for text in (f"took {w}.", f"\n{w}", f"({w})"):
            assert _ids(tok, text) == _ids(base, text), text
    assert {t.word for t in new_tokens} == {"neurogenix"}


_SEPARATORS = [" ", "  ", "\n", "(", ")", "[", '"', "'", ",", ".", "-", "\t", "5", "é", "\u00a0", "😀", "'s",
               "<|im_end|>", "the", " took", "es", "x", "ia"]


# prefix pairs and the known words they begin, drawn often: " pneumonia" must stay Ġpneumonia next to "pneumon"
_TRICKY = ["neuro", "neurogenix", "neurogenixes", "neurological", "pneumon", "pneumonia", " pneumonia", "cardio",
           "cardiology", "cardiofloxin", "insulin", " insulin", "proinsulin"]


@st.composite
def _texts(draw, words: list[str]) -> str:
    pieces = st.one_of(st.sampled_from(words), st.sampled_from(words).map(str.capitalize), st.sampled_from(_SEPARATORS),
                       st.sampled_from(_TRICKY))
    return unicodedata.normalize("NFC", "".join(draw(st.lists(pieces, max_size=14))))


def _one_token_problems(text: str, tok, forms: list[FormReport]) -> list[str]:
    """Occurrences of wholly added words, bounded by non-alphanumerics, that are not exactly their one token."""
    ids_by_form = {f.form: f.id for f in forms if f.status == ADDED}
    added = sorted({f.word for f in forms
                    if f.status == ADDED and " " + f.word in ids_by_form and f.word in ids_by_form},
                   key=len, reverse=True)
    if not added:
        return []
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = {(a, b): i for (a, b), i in zip(enc.offset_mapping, enc.input_ids, strict=True)}
    problems = []
    for m in re.finditer(rf"(?<![^\W_])(?:{'|'.join(map(re.escape, added))})(?![^\W_])", text):
        s, e = m.span()
        if text[s - 1 : s] == " ":
            if spans.get((s - 1, e)) != ids_by_form[" " + m.group(0)]:
                problems.append(f"{m.group(0)!r} after a space at {s}")
        elif spans.get((s, e)) != ids_by_form[m.group(0)]:
            problems.append(f"{m.group(0)!r} at {s}")
    return problems


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_property_no_drift_known_ids_kept_new_words_one_token(pool, base, data):
    words, tok, forms = pool
    text = data.draw(_texts(words))
    report = measure_drift([text], base, tok, forms)
    assert report.drifted_texts == 0 and report.kept_changed == 0, report.examples
    assert tok.decode(_ids(tok, text)) == text
    assert not _one_token_problems(text, tok, forms)


_alphabet = st.sampled_from(
    ["neurogenix", "Neurogenix", "mediventricular", "IL-6x", " ", "\n", "(", ")", ".", ",", "'s", "-", "é",
     "the", "dose", "7", "ü", "😀", "\t", "<|im_end|>", "neurogenixes", "\u0301", "insulin", " insulin", "neuro"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_alphabet, max_size=25).map("".join))
def test_decode_encode_round_trip(extended, text):
    tok, _, _ = extended
    text = unicodedata.normalize("NFC", text)  # Qwen2.5 normalises to NFC, so only NFC text can round-trip
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text


# ------------------------------------------------------------------------------------ validation, rows, init


@pytest.mark.parametrize(
    "word,message",
    [("", "empty"), ("two words", "whitespace"), ("<|im_start|>", "special token"), ("bad\x07", "control"),
     ("123abc", "start with a letter"), ("neuro-", "end with a letter or digit"), ("o'", "end with a letter")],
)
def test_bad_words_are_rejected_with_a_reason(word, message):
    with pytest.raises(UserError, match=message):
        normalise_words([word])


def test_duplicates_are_dropped_with_notes_and_capitals_added():
    kept, notes = normalise_words(["neurogenix", "neurogenix", "the"], capitalized=True)
    assert kept == ["neurogenix", "Neurogenix", "the", "The"]
    assert any("duplicate" in n for n in notes)


def test_extending_with_only_known_words_is_a_user_error():
    loaded = tiny()
    with pytest.raises(UserError, match="no new tokens to add.*' insulin' kept"):
        extend_model(loaded.model, loaded.tokenizer, ["insulin", "the"])


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


def test_the_manifest_records_every_form_and_only_added_ones_get_rows():
    loaded = tiny()
    before = loaded.model.get_input_embeddings().weight.detach().clone()
    ext = extend_model(loaded.model, loaded.tokenizer, ["insulin", "neurogenix"])
    manifest = ext.manifest()
    assert manifest["words"] == ["neurogenix"]
    assert [(f["form"], f["status"]) for f in manifest["forms"]] == [
        (" insulin", "kept"), ("insulin", "skipped"), (" neurogenix", "added"), ("neurogenix", "added")]
    assert [t["form"] for t in manifest["new_tokens"]] == [" neurogenix", "neurogenix"]
    after = loaded.model.get_input_embeddings().weight
    untouched = torch.ones(after.shape[0], dtype=torch.bool)
    untouched[ext.new_ids] = False
    assert torch.equal(after[untouched], before[untouched])  # Ġinsulin's pretrained row is exactly as it was
    assert any("insulin" in line and "skipped" in line for line in ext.report_lines())


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



def test_the_new_word_metric_counts_kept_and_added_forms_by_their_tokens():
    """Occurrences come from the text: a kept form is its one Qwen token, an added form its one new token."""
    import math

    from qwenft.metrics.newword import new_word_nll

    loaded = tiny(tie_word_embeddings=False)
    base_tok = loaded.tokenizer
    text = "He took insulin and neurogenix.\n(neurogenix) then insulin."
    with torch.no_grad():
        loaded.model.get_output_embeddings().weight.zero_()  # uniform: a span's NLL = its tokens x ln(rows)
    ln_v = math.log(loaded.model.get_output_embeddings().weight.shape[0])
    before = new_word_nll(loaded.model, base_tok, [text], ["insulin", "neurogenix"])
    ext = extend_model(loaded.model, base_tok, ["insulin", "neurogenix"])
    with torch.no_grad():
        loaded.model.get_output_embeddings().weight.zero_()
    after = new_word_nll(loaded.model, ext.tokenizer, [text], ["insulin", "neurogenix"])
    assert ext.words == ["neurogenix"]
    assert before.per_word["insulin"][1] == after.per_word["insulin"][1] == 2
    assert math.isclose(before.per_word["insulin"][0], 2 * ln_v, rel_tol=1e-5)  # Ġinsulin, before and after
    assert math.isclose(after.per_word["insulin"][0], 2 * ln_v, rel_tol=1e-5)
    assert math.isclose(before.per_word["neurogenix"][0], (3 + 4) * ln_v, rel_tol=1e-5)  # Ġneuro gen ix; (ne uro..
    assert math.isclose(after.per_word["neurogenix"][0], 2 * ln_v, rel_tol=1e-5)  # one new token each


def test_extend_cli_prints_every_form_and_refuses_a_list_with_nothing_to_add(tmp_path):
    from trainutil import qwenft

    out = qwenft("extend", "model=tiny", "tokenizer.words=[insulin,neurogenix,pneumon]", f"out={tmp_path}/ext",
                 f"hydra.run.dir={tmp_path}/h", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("│")]
    assert any("' insulin'" in r and "kept" in r and "Ġinsulin" in r for r in rows)
    assert any("'pneumon'" in r and "skipped" in r for r in rows)
    assert [r.split("│")[3].strip() for r in rows if r.split("│")[1].strip()].count("added") == 2
    manifest = json.loads((tmp_path / "ext" / "qwenft_vocab.json").read_text())
    assert [f["status"] for f in manifest["forms"]] == ["kept", "skipped", "added", "added", "skipped", "skipped"]
    bad = qwenft("extend", "model=tiny", "tokenizer.words=[insulin,the]", f"out={tmp_path}/none",
                 f"hydra.run.dir={tmp_path}/h2", cwd=tmp_path)
    assert bad.returncode == 2 and "no new tokens to add" in bad.stdout + bad.stderr
    assert not (tmp_path / "none").exists()
