"""Metric values on hand-checked examples, and RRF arithmetic on hand-computed ranks."""

from __future__ import annotations

import math

from qwenft.decomposition.output import Answer, Response
from qwenft.metrics.clinical import mrr, new_term_recall, recall_at_k, rouge_l, score_prediction, token_f1
from qwenft.retrieval.index import rrf


def test_rrf_arithmetic():
    # a: 1/61 + 1/62 ; b: 1/62 + 1/61 ; c: 1/63 ; d: 1/63 -> a and b tie (name order), then c, d
    assert rrf([["a", "b", "c"], ["b", "a", "d"]], k=60) == ["a", "b", "c", "d"]
    # k=1: x = 1/2 ; y = 1/3 + 1/2 ; z = 1/4 + 1/3 -> y, z, x
    assert rrf([["x", "y", "z"], ["y", "z"]], k=1) == ["y", "z", "x"]


def test_token_f1_and_rouge_by_hand():
    # pred tokens [drug, x, cures, it], ref [x, cures, it] -> P=3/4 R=1 F1=6/7
    assert math.isclose(token_f1("The drug X cures it.", "X cures it"), 6 / 7)
    assert token_f1("", "x") == 0.0
    # LCS of "a b c d" vs "a c d" = 3; P=3/4 R=1 -> F=6/7
    assert math.isclose(rouge_l("a b c d", "a c d"), 6 / 7, rel_tol=1e-6)


def test_retrieval_and_new_term_metrics():
    assert recall_at_k(["d1", "d2"], ["d2", "d3"]) == 0.5
    assert mrr(["d1", "d2"], ["d2"]) == 0.5 and mrr(["d1"], ["d9"]) == 0.0
    assert new_term_recall("Give neurogenix now", "neurogenix and cardiofloxin", ["neurogenix", "cardiofloxin"]) == 0.5
    assert math.isnan(new_term_recall("x", "no new words here", ["neurogenix"]))


def test_score_prediction_end_to_end():
    ref = {"summary": "A man with fever.", "answers": ["Influenza.", "Rest."], "gold_docs": [["d1"], ["d2"]],
           "new_words": []}
    resp = Response("A man with fever.", [Answer("q1", "Influenza.", ["d1"]), Answer("q2", "", [])])
    s = score_prediction(resp, ref, {"retrieved": [["d1", "d3"], ["d3", "d2"]], "format_valid": True})
    assert s["summary_rougeL"] == 1.0 and s["coverage"] == 0.5 and s["answer_f1"] == 0.5
    assert s["recall_at_k"] == 1.0 and s["mrr"] == 0.75 and s["format_valid"] == 1.0
