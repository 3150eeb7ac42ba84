"""Metric values on hand-checked examples, and RRF arithmetic on hand-computed ranks."""

from __future__ import annotations

import math

import pytest

from qwenft.clinical.output import Answer, Response
from qwenft.metrics.clinical import (
    aggregate,
    coverage,
    mrr,
    new_term_recall,
    normalize_answer,
    recall_at_k,
    rouge_l,
    score_prediction,
    token_f1,
)
from qwenft.retrieval.fusion import interleave, rrf, rrf_scores


def test_rrf_arithmetic_on_hand_computed_ranks():
    # k=60: a = 1/61 + 1/62, b = 1/62 + 1/61 (tie: a appears first), c = 1/63, d = 1/63 (tie: c first)
    scores = rrf_scores([["a", "b", "c"], ["b", "a", "d"]], k=60)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62) and scores["c"] == pytest.approx(1 / 63)
    assert rrf([["a", "b", "c"], ["b", "a", "d"]], k=60) == ["a", "b", "c", "d"]
    # k=1: x = 1/2 ; y = 1/3 + 1/2 = 0.833 ; z = 1/4 + 1/3 = 0.583 -> y, z, x
    assert rrf([["x", "y", "z"], ["y", "z"]], k=1) == ["y", "z", "x"]
    # k=0 rewards a single first place over two middling ranks: p = 1/1 ; q = 1/2 + 1/2 = 1 ; r = 1/3 + 1/3
    assert rrf_scores([["p", "q", "r"], ["s", "q", "r"]], k=0)["q"] == pytest.approx(1.0)
    # a document repeated within one ranking counts once, at its best rank
    assert rrf_scores([["a", "a", "b"]], k=0) == {"a": 1.0, "b": 0.5}
    with pytest.raises(ValueError):
        rrf([["a"]], k=-1)


def test_interleaved_union_takes_every_query_top_hit_first():
    assert interleave([["a", "b", "c"], ["d", "a"], ["e"]]) == ["a", "d", "e", "b", "c"]
    assert interleave([]) == []


def test_token_f1_squad_normalisation_by_hand():
    assert normalize_answer("The  Drug, X-ray!  an Apple") == "drug xray apple"
    # pred [drug, x, cures, it], ref [x, cures, it]: P = 3/4, R = 1, F1 = 6/7
    assert token_f1("The drug X cures it.", "X cures it") == pytest.approx(6 / 7)
    # repeated tokens count with multiplicity: pred [a1, a1, b], ref [a1, b, b] -> common 2, P = R = 2/3
    assert token_f1("a1 a1 b", "a1 b b") == pytest.approx(2 / 3)
    assert token_f1("", "x") == 0.0 and token_f1("the", "a") == 1.0  # both empty after normalisation
    assert token_f1("fever", "rash") == 0.0


def test_rouge_l_by_hand():
    # LCS("a b c d", "a c d") = 3: P = 3/4, R = 3/3 -> F = 6/7
    assert rouge_l("a b c d", "a c d") == pytest.approx(6 / 7)
    assert rouge_l("treated with drugs", "treat with drug") == pytest.approx(1.0)  # Porter stemming
    assert rouge_l("", "a") == 0.0


def test_retrieval_coverage_and_new_term_metrics():
    assert recall_at_k(["d1", "d2", "d3"], ["d2", "d3"]) == 1.0
    assert recall_at_k(["d1", "d2", "d3"], ["d2", "d3"], k=2) == 0.5
    assert math.isnan(recall_at_k(["d1"], []))
    assert mrr(["d1", "d2"], ["d2"]) == 0.5 and mrr(["d1"], ["d9"]) == 0.0 and mrr(["d3", "d1"], ["d1", "d3"]) == 1.0
    assert coverage(["x", " ", "y", ""]) == 0.5
    words = ["neurogenix", "cardiofloxin", "Dravik"]
    # reference holds neurogenix and Dravik; the prediction spells neurogenix exactly, Dravik only in lower case
    assert new_term_recall("Give neurogenix; see dravik", "neurogenix and Dravik's sign", words) == 0.5
    assert new_term_recall("neurogenixes", "neurogenix", words) == 0.0  # a longer word is not the word
    assert math.isnan(new_term_recall("x", "no new words here", words))


def test_score_prediction_end_to_end_by_hand():
    ref = {"summary": "A man with fever.", "answers": ["Influenza.", "Give neurogenix."],
           "gold_docs": [["d1"], ["d2", "d4"]], "new_words": ["neurogenix"]}
    resp = Response("A man with fever.", [Answer("q1", "Influenza.", ["d1"]), Answer("q2", "", [])])
    trace = {"retrieved": [["d1", "d3"], ["d3", "d2"]], "format_valid": True, "retrieval": True}
    s = score_prediction(resp, ref, trace)
    assert s["summary_rougeL"] == 1.0 and s["coverage"] == 0.5
    assert s["answer_f1"] == 0.5 and s["answer_rougeL"] == 0.5
    assert s["recall_at_k"] == pytest.approx((1 + 0.5) / 2)  # q1 1/1, q2 1/2
    assert s["mrr"] == pytest.approx((1 + 0.5) / 2)
    assert s["format_valid"] == 1.0 and s["new_term_recall"] == 0.0
    # a whole-prompt answer whose shape was wrong, and no retrieval at all
    s = score_prediction(resp, ref, {"retrieved": [[], []], "format_valid": False, "retrieval": False})
    assert s["format_valid"] == 0.0 and math.isnan(s["recall_at_k"]) and math.isnan(s["mrr"])


def test_aggregate_skips_nan():
    rows = [{"a": 1.0, "b": float("nan")}, {"a": 0.0, "b": 0.5}, {"a": 0.5, "b": float("nan")}]
    assert aggregate(rows) == {"a": 0.5, "b": 0.5}
    assert math.isnan(aggregate([{"a": float("nan")}])["a"])
