"""The clinical-answer metric loads with ``evaluate.load`` from its local file (offline) and agrees with qwenft's
own scorer on real K-QA answers."""

from __future__ import annotations

import json
from pathlib import Path

import evaluate
import pytest

from qwenft.metrics import clinical_answer_path
from qwenft.metrics.clinical import rouge_l, token_f1

KQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "kqa_questions_w_answers.jsonl"


def test_evaluate_load_local_module_matches_qwenft_scores():
    if not KQA.exists():
        pytest.skip(f"{KQA} not present")
    rows = [json.loads(line) for line in KQA.read_text().splitlines()[:20]]
    refs = [r["Free_form_answer"] for r in rows]
    preds = [r["Question"] for r in rows]  # a poor answer on purpose: the question itself
    metric = evaluate.load(clinical_answer_path())
    out = metric.compute(predictions=preds, references=refs, new_words=[["insulin"]] * len(rows))
    assert out["n"] == 20
    assert out["rougeL"] == pytest.approx(sum(map(rouge_l, preds, refs)) / 20)
    assert out["f1"] == pytest.approx(sum(map(token_f1, preds, refs)) / 20)
    assert 0 < out["rougeL"] < 0.5 and out["coverage"] == 1.0
    same = metric.compute(predictions=refs, references=refs)
    assert same["rougeL"] == pytest.approx(1.0) and same["f1"] == pytest.approx(1.0)
