"""The step-0 per-word report (pieces vs new token) and ``tokenizer.drop_worse``, in ``extend`` and ``train``."""

from __future__ import annotations

import json
import math

import pytest

from qwenft.metrics.newword import WordNLLStats
from qwenft.model.sources import tiny
from qwenft.tokenizer import word_report
from qwenft.tokenizer.word_report import extend_reported, restrict, worse_words
from tests.trainutil import TINY

TEXTS = ["The patient took neurogenix daily; neurogenix helped.", "Marked mediventricular fibrosis was seen.",
         "Nothing new here."]
WORDS = ["neurogenix", "mediventricular", "cardiofluxin"]  # cardiofluxin occurs in no text: cannot be judged


def test_worse_words_sum_every_surface_form_and_keep_unjudged_words():
    rows = [{"word": "neurogenix", "occurrences": 2, "delta": 0.5}, {"word": "Neurogenix", "occurrences": 1,
                                                                      "delta": -2.0},
            {"word": "mediventricular", "occurrences": 1, "delta": 0.1}]
    # neurogenix: 2 x 0.5 - 2.0 < 0 pays in total; mediventricular costs; cardiofluxin was not measured
    assert worse_words(rows, WORDS) == ["mediventricular"]


def test_restrict_keeps_the_text_and_drops_the_words_occurrences():
    stats = WordNLLStats(word_nll=6.0, occurrences=3, text_nll=10.0, text_bytes=100,
                         per_word={"neurogenix": [4.0, 2], "Mediventricular": [2.0, 1]})
    out = restrict(stats, ["mediventricular"])
    assert (out.word_nll, out.occurrences, out.text_nll, out.text_bytes) == (4.0, 2, 10.0, 100)
    assert out.bits_per_byte == stats.bits_per_byte


@pytest.mark.parametrize("tied", [True, False])
def test_report_scores_pieces_before_the_model_is_touched_and_the_token_after(tied):
    loaded = tiny(tie_word_embeddings=tied)
    _, ext, report = extend_reported(loaded, lambda: pytest.fail("nothing dropped: no reload"), WORDS, TEXTS)
    assert report is not None and not report.dropped
    assert report.before.occurrences == report.after.occurrences == 3
    assert {r["word"] for r in report.per_word} == {"neurogenix", "mediventricular"}
    # a random tiny model is near uniform: k pieces cost about k x ln(rows), one token about ln(rows)
    assert all(r["nll_pieces"] > 1.5 * r["nll_new"] for r in report.per_word)
    assert report.before.text_bytes == report.after.text_bytes and math.isfinite(report.after.bits_per_byte)
    assert "words pay" in report.summary("mean_subword")


@pytest.mark.parametrize("tied", [True, False])
def test_drop_worse_extends_a_fresh_model_without_the_words_that_do_not_pay(tied, monkeypatch):
    real_rows = word_report.per_word_rows

    def neurogenix_costs(before, after):  # noqa: ANN001 - the rows as measured, one word made to cost
        return [{**r, "delta": 1.0} if r["word"] == "neurogenix" else r for r in real_rows(before, after)]

    monkeypatch.setattr(word_report, "per_word_rows", neurogenix_costs)
    loads = []

    def load():
        loads.append(tiny(tie_word_embeddings=tied))
        return loads[-1]

    first = tiny(tie_word_embeddings=tied)
    loaded, ext, report = extend_reported(first, load, WORDS, TEXTS, drop_worse=True)
    assert len(loads) == 1 and loaded is loads[0]  # the rows written for the first set cannot be taken back
    assert report.dropped == ["neurogenix"] and "neurogenix" not in ext.words
    assert "cardiofluxin" in ext.words  # not judged (no occurrence), so kept
    assert [r["word"] for r in report.per_word] == ["mediventricular"]
    assert report.before.occurrences == report.after.occurrences == 1
    assert len(ext.tokenizer(" neurogenix", add_special_tokens=False).input_ids) > 1  # back to its pieces


def test_drop_worse_that_would_drop_everything_is_one_clear_error(monkeypatch):
    from qwenft.errors import UserError

    monkeypatch.setattr(word_report, "per_word_rows",
                        lambda b, a: [{"word": w, "occurrences": 1, "delta": 1.0} for w in a.per_word])
    with pytest.raises(UserError, match="tokenizer.drop_worse: every one of the 2 words.*tokenizer=none"):
        extend_reported(tiny(), tiny, WORDS[:2], TEXTS, drop_worse=True)


def test_train_reports_per_word_and_export_rebuilds_the_same_vocabulary(tmp_path, monkeypatch):
    """``train``: the report lands in ``run_info.json`` and the exported ``qwenft_vocab.json``; an export after
    ``drop_worse`` rebuilds the run's vocabulary (its tokenizer hash is checked) without the dropped word."""
    from qwenft.train.loop import export_run, train_steps

    real_rows = word_report.per_word_rows
    monkeypatch.setattr(word_report, "per_word_rows", lambda b, a: [
        {**r, "delta": 1.0} if r["word"] == "neurogenix" else r for r in real_rows(b, a)])
    rows = [{"prompt": f"What is item {i}?", "completion": f"Item {i} is neurogenix, seen with mediventricular "
                                                           "change."} for i in range(8)]
    for split in ("train", "val"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [o for o in TINY if not o.startswith(("logger=", "tokenizer.words_file"))] + [
        "logger=none", "data=files", f"data.train_path={tmp_path / 'train.jsonl'}",
        f"data.val_path={tmp_path / 'val.jsonl'}", "tokenizer.words=[neurogenix,mediventricular,cardiofluxin]",
        "tokenizer.drop_worse=true", "export.enabled=false"]
    train_steps(overrides, steps=1, run_dir=tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    report = info["words_report"]
    assert report["texts"] == 4 and report["dropped"] == ["neurogenix"]  # callbacks.new_word_metrics.max_texts=4
    assert [r["word"] for r in report["per_word"]] == ["mediventricular"]
    assert report["zero_shot_before"]["new_word_nll"] > report["zero_shot_after_init"]["new_word_nll"]
    assert info["words"] == 2  # mediventricular, and cardiofluxin (absent from the held-out text: kept)
    export_run(tmp_path / "run")
    vocab = json.loads((tmp_path / "run" / "merged" / "qwenft_vocab.json").read_text())
    assert vocab["words_report"] == report and "neurogenix" not in json.dumps(vocab["forms"])

    def no_scoring(*args, **kwargs):
        raise AssertionError("a resume scored the held-out text again")

    monkeypatch.setattr(word_report, "new_word_nll", no_scoring)  # a resume rebuilds the vocabulary from the record
    train_steps([*overrides, "ckpt_path=last"], steps=2, run_dir=tmp_path / "run")
    resumed = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert resumed["words_report"] == report and resumed["words"] == 2
