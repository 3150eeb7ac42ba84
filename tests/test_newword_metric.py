"""New-word NLL and bits per byte are comparable across tokenizations."""

from __future__ import annotations

import math

import torch

from qwenft.metrics.newword import NewWordPerplexity, new_word_nll, word_pattern
from qwenft.model.sources import tiny
from qwenft.tokenizer.extend import extend_model

TEXTS = [
    "The patient took neurogenix daily.\nNeurogenix (neurogenix) helped; neurogenixes did not.",
    "mediventricular fibrosis and neurogenix",
]


def _uniform(model):
    """Zero the head: every token gets probability 1/rows, so the NLL of a span is (its tokens) x ln(rows)."""
    with torch.no_grad():
        model.get_output_embeddings().weight.zero_()
    return math.log(model.get_output_embeddings().weight.shape[0])


def test_word_nll_sums_the_pieces_before_and_is_one_token_after():
    words = ["neurogenix", "mediventricular"]
    loaded = tiny(tie_word_embeddings=False)
    base_tok = loaded.tokenizer
    ln_v = _uniform(loaded.model)
    before = new_word_nll(loaded.model, base_tok, TEXTS, words)
    ext = extend_model(loaded.model, base_tok, words)
    _uniform(loaded.model)
    after = new_word_nll(loaded.model, ext.tokenizer, TEXTS, words)

    occurrences = sum(len(word_pattern(words).findall(t)) for t in TEXTS)
    assert before.occurrences == after.occurrences == occurrences == 4  # "Neurogenix" and "neurogenixes" are not
    pieces = sum(  # tokens that overlap each occurrence in the original tokenization
        len([1 for a, b in enc.offset_mapping if a < m.end() and b > m.start()])
        for t in TEXTS
        for enc in [base_tok(t, add_special_tokens=False, return_offsets_mapping=True)]
        for m in word_pattern(words).finditer(t)
    )
    assert pieces > 2 * occurrences
    assert math.isclose(before.word_nll, pieces * ln_v, rel_tol=1e-5)
    assert math.isclose(after.word_nll, occurrences * ln_v, rel_tol=1e-5)  # one token per occurrence
    # both runs pay for exactly the same bytes, so bits/byte compares the two tokenizations directly
    assert before.text_bytes == after.text_bytes == sum(len(t.encode()) for t in TEXTS)
    n_before = sum(len(base_tok(t, add_special_tokens=False).input_ids) for t in TEXTS)
    n_after = sum(len(ext.tokenizer(t, add_special_tokens=False).input_ids) for t in TEXTS)
    assert math.isclose(before.bits_per_byte, n_before * ln_v / math.log(2) / before.text_bytes, rel_tol=1e-5)
    assert math.isclose(after.bits_per_byte, n_after * ln_v / math.log(2) / after.text_bytes, rel_tol=1e-5)
    assert after.per_word["neurogenix"][1] == 3 and after.per_word["mediventricular"][1] == 1
    # first occurrences: a word's second "neurogenix" in the first text could be copied, so it is not one of them
    assert before.first_occurrences == after.first_occurrences == 3
    assert math.isclose(after.first_new_word_nll, ln_v, rel_tol=1e-5)
    first_pieces = len(base_tok(" neurogenix").input_ids)  # the first text's first occurrence follows a space
    assert before.first_word_nll > after.first_word_nll and first_pieces > 1


def test_metric_accumulates_like_the_function_over_batches():
    loaded = tiny()
    words = ["neurogenix"]
    whole = new_word_nll(loaded.model, loaded.tokenizer, TEXTS, words)
    metric = NewWordPerplexity()
    for t in TEXTS:
        metric.update(new_word_nll(loaded.model, loaded.tokenizer, [t], words))
    out = metric.compute()
    assert math.isclose(float(out["new_word_nll"]), whole.new_word_nll, rel_tol=1e-5)
    assert math.isclose(float(out["new_word_ppl"]), whole.new_word_ppl, rel_tol=1e-5)
    assert math.isclose(float(out["bits_per_byte"]), whole.bits_per_byte, rel_tol=1e-5)


def test_padding_in_a_batch_does_not_change_the_numbers():
    loaded = tiny()
    one = new_word_nll(loaded.model, loaded.tokenizer, TEXTS, ["neurogenix"], batch_size=1)
    two = new_word_nll(loaded.model, loaded.tokenizer, TEXTS, ["neurogenix"], batch_size=2)
    assert math.isclose(one.word_nll, two.word_nll, rel_tol=1e-4)
    assert math.isclose(one.text_nll, two.text_nll, rel_tol=1e-4)
