"""Evaluation metrics on real data: bootstrap intervals (against scipy), diagnosis match on AgentClinic's
diagnoses, the K-QA proxies on the physicians' own answers, multiple-choice letters, and targets in scoring."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from qwenft.clinical.output import Answer, Response
from qwenft.metrics.bootstrap import bootstrap_mean, paired_difference
from qwenft.metrics.choice import parse_choice
from qwenft.metrics.clinical import score_prediction
from qwenft.metrics.diagnosis import diagnosis_match, normalize, variants
from qwenft.metrics.kqa import contradiction_rate, must_have_coverage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AGENTCLINIC = DATA / "agentclinic_medqa.jsonl"
KQA = DATA / "kqa_questions_w_answers.jsonl"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not present")


# ------------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_interval_matches_scipy_percentile_and_is_seeded():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x = rng.binomial(1, 0.6, size=120).astype(float)  # a hit rate over 120 prompts
    est = bootstrap_mean(list(x), n_resamples=4000, seed=3)
    ref = scipy_stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=3)
    assert est.mean == pytest.approx(x.mean()) and est.n == 120
    # different random streams: the bounds agree to Monte-Carlo error, far below the interval's width (~0.17)
    assert est.lo == pytest.approx(ref.confidence_interval.low, abs=0.015)
    assert est.hi == pytest.approx(ref.confidence_interval.high, abs=0.015)
    assert est.lo < est.mean < est.hi
    assert bootstrap_mean(list(x), seed=3) == bootstrap_mean(list(x), seed=3)  # reproducible to the digit
    assert bootstrap_mean(list(x), seed=3) != bootstrap_mean(list(x), seed=4)


def test_bootstrap_skips_nan_and_needs_two_prompts():
    est = bootstrap_mean([1.0, float("nan"), 0.0, 1.0])
    assert est.n == 3 and est.mean == pytest.approx(2 / 3)
    one = bootstrap_mean([0.5, float("nan")])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.lo) and math.isnan(one.hi)
    none = bootstrap_mean([float("nan")])
    assert none.n == 0 and math.isnan(none.mean)
    with pytest.raises(ValueError):
        bootstrap_mean([1.0, 2.0], confidence=95)


def test_paired_difference_cancels_prompt_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0, 1, size=80)  # what both strategies share, prompt by prompt
    a = difficulty + 0.05 + rng.normal(0, 0.01, 80)
    b = difficulty
    paired = paired_difference(list(a), list(b))
    unpaired_width = (bootstrap_mean(list(a)).hi - bootstrap_mean(list(a)).lo) * math.sqrt(2)
    assert paired.excludes_zero() and paired.lo > 0.04 and paired.hi < 0.06
    assert paired.hi - paired.lo < unpaired_width / 10  # pairing is what resolves a 0.05 difference
    same = paired_difference([0.2, 0.7, 1.0], [0.2, 0.7, 1.0])
    assert (same.mean, same.lo, same.hi) == (0.0, 0.0, 0.0) and not same.excludes_zero()
    assert paired_difference([1.0, float("nan"), 0.0], [0.0, 1.0, float("nan")]).n == 1  # pairs with both only
    with pytest.raises(ValueError, match="same prompts"):
        paired_difference([1.0], [1.0, 0.0])


# ------------------------------------------------------------------------------------------------ diagnosis


def _diagnoses() -> list[str]:
    _need(AGENTCLINIC)
    return [json.loads(line)["OSCE_Examination"]["Correct_Diagnosis"]
            for line in AGENTCLINIC.read_text().splitlines() if line.strip()]


def test_every_agentclinic_diagnosis_is_found_in_a_sentence_that_names_it():
    for dx in _diagnoses():
        assert diagnosis_match(f"The most likely diagnosis is {dx}.", dx) == 1.0, dx
        assert diagnosis_match(f"Findings suggest {dx.upper()}, to be confirmed.", dx) == 1.0, dx
        assert diagnosis_match("The most likely diagnosis is a viral upper respiratory infection.", dx) == 0.0, dx


def test_diagnosis_variants_are_exactly_the_stated_ones():
    assert diagnosis_match("Likely BPPV.", "Benign Paroxysmal Positional Vertigo (BPPV)") == 1.0
    assert diagnosis_match("benign paroxysmal positional vertigo", "Benign Paroxysmal Positional Vertigo (BPPV)") == 1.0
    assert diagnosis_match("Hirschsprung's disease", "Hirschsprung disease") == 1.0
    assert diagnosis_match("Hirschsprung disease", "Hirschsprung’s disease") == 1.0
    assert diagnosis_match("Legg-Calve-Perthes disease", "Legg-Calvé-Perthes disease (LCPD)") == 1.0
    assert diagnosis_match("acute lymphoblastic leukaemia", "Acute lymphoblastic leukemia") == 1.0
    assert diagnosis_match("intraventricular haemorrhage", "Intraventricular Hemorrhage") == 1.0
    # qualifiers are never dropped, abbreviations not invented, hedges are credited (a stated limit)
    assert diagnosis_match("acute lymphocytic leukemia", "Chronic lymphocytic leukemia") == 0.0
    assert diagnosis_match("myelogenous leukemia", "Acute myelogenous leukemia") == 0.0
    assert diagnosis_match("CLL", "Chronic lymphocytic leukemia") == 0.0
    assert diagnosis_match("CLL", "Chronic lymphocytic leukemia", synonyms=["CLL"]) == 1.0
    assert diagnosis_match("asthma or COPD", "Asthma") == 1.0
    assert diagnosis_match("hemophiliac", "Hemophilia") == 0.0  # whole words only
    assert variants("Progressive multifocal encephalopathy (PML)") == [
        "progressive multifocal encephalopathy pml", "progressive multifocal encephalopathy", "pml"]
    assert normalize("Glanzmann’s Thrombasthenia") == "glanzmann thrombasthenia"


def test_diagnoses_only_match_each_other_where_one_name_contains_the_other():
    """Across the 107 real diagnoses, gold i credited by an answer naming gold j only where it should be."""
    dxs = sorted(set(_diagnoses()))
    for gold in dxs:
        for named in dxs:
            if gold == named:
                continue
            hit = diagnosis_match(f"The diagnosis is {named}.", gold)
            contained = any(f" {v} " in f" {normalize(named)} " for v in variants(gold))
            assert hit == float(contained), (gold, named)
    # the real pairs that do contain each other: the general name is credited by the specific one, not back
    assert diagnosis_match("The diagnosis is Hemophilia A.", "Hemophilia") == 1.0
    assert diagnosis_match("The diagnosis is Hemophilia.", "Hemophilia A") == 0.0


# ------------------------------------------------------------------------------------------------ K-QA


def _kqa() -> list[dict]:
    _need(KQA)
    return [json.loads(line) for line in KQA.read_text().splitlines() if line.strip()]


def test_kqa_coverage_proxy_separates_the_physicians_answer_from_another_questions():
    rows = [r for r in _kqa() if r["Must_have"]]
    own = [must_have_coverage(r["Free_form_answer"], r["Must_have"]) for r in rows]
    shifted = [must_have_coverage(rows[i - 1]["Free_form_answer"], r["Must_have"]) for i, r in enumerate(rows)]
    question_only = [must_have_coverage(r["Question"], r["Must_have"]) for r in rows]
    assert len(rows) == 201
    assert np.mean(own) > 0.85 and np.mean(shifted) < 0.02 and np.mean(question_only) < 0.1


def test_kqa_contradiction_proxy_flags_negated_answers():
    rows = [r for r in _kqa() if r["Must_have"]]
    statements = [r["Must_have"] + r["Nice_to_have"] for r in rows]
    own = [contradiction_rate(r["Free_form_answer"], s) for r, s in zip(rows, statements, strict=True)]
    negated = [contradiction_rate(re.sub(r"\b(is|are|can|should|may)\b", r"\1 not", r["Free_form_answer"]), s)
               for r, s in zip(rows, statements, strict=True)]
    assert np.mean(own) < 0.06  # the false-positive floor of a lexical proxy on the physicians' own words
    assert np.mean(negated) > 0.35
    statement = "Lexapro is not approved for use in pediatric patients less than 12 years of age."
    opposite = "Lexapro is approved for pediatric patients less than 12 years of age."
    same = "Lexapro is not approved for pediatric patients under 12 years of age."
    assert contradiction_rate(opposite, [statement]) == 1.0
    assert contradiction_rate(same, [statement]) == 0.0
    assert contradiction_rate("Take it with food.", [statement]) == 0.0  # unrelated: neither supported nor contradicted
    assert math.isnan(must_have_coverage("anything", [])) and math.isnan(contradiction_rate("x", ["the of"]))


# ------------------------------------------------------------------------------------------------ choice


@pytest.mark.parametrize("text,expected", [
    ("The answer is B.", "B"), ("B", "B"), ("(C) Warm compresses", "C"), ("Answer: d", "D"),
    ("I would choose option C because ...", "C"), ("**D** Fluorometholone", "D"),
    ("Ketotifen eye drops are the most appropriate.", "B"),  # the option text alone
    ("A 35-year-old man needs erythromycin ointment or warm compresses", None),  # two texts, no letter
    ("A patient with allergic conjunctivitis.", None), ("", None), ("The answer is E.", None),
])
def test_parse_choice(text, expected):
    options = {"A": "Erythromycin ointment", "B": "Ketotifen eye drops", "C": "Warm compresses",
               "D": "Fluorometholone eye drops"}
    assert parse_choice(text, options) == expected


def test_targets_are_scored_per_kind_and_nan_where_absent():
    ref = {"summary": "", "answers": ["Myasthenia gravis", "x"], "targets": [
        {"kind": "diagnosis", "question": 0, "answer": "Myasthenia gravis"},
        {"kind": "must_have", "must_have": ["Acetylcholine receptor antibodies are elevated"], "nice_to_have": []},
        {"kind": "choice", "question": 1, "options": {"A": "Edrophonium", "B": "Thymectomy"}, "answer": "B"}]}
    resp = Response("summary", [Answer("q1", "Probably myasthenia gravis."),
                                Answer("q2", "Answer: B. Acetylcholine receptor antibodies are not elevated.")])
    s = score_prediction(resp, ref)
    assert s["diagnosis_match"] == 1.0 and s["mc_accuracy"] == 1.0
    assert s["must_have_coverage"] == 1.0 and s["contradiction"] == 1.0
    assert math.isnan(s["summary_rougeL"])  # no reference summary, no score
    plain = score_prediction(resp, {"summary": "s", "answers": ["a", "b"]})
    assert all(math.isnan(plain[m]) for m in ("diagnosis_match", "must_have_coverage", "contradiction",
                                                "mc_accuracy", "hit_at_k"))
    with pytest.raises(ValueError, match="unknown target kind"):
        score_prediction(resp, {**ref, "targets": [{"kind": "vibes"}]})


def test_importing_the_metrics_never_lets_a_logging_reset_close_a_redirected_stderr():
    """rouge_score pulls in absl, whose handler would bind to a redirected stderr (pytest's capture, a notebook)
    and close it when Hydra's dictConfig resets logging — which killed the whole test session once."""
    import subprocess
    import sys

    code = (
        "import io, logging.config, sys\n"
        "redirected = io.StringIO(); sys.stderr = redirected\n"
        "import qwenft.metrics.clinical\n"
        "sys.stderr = io.StringIO()\n"
        "logging.config.dictConfig({'version': 1})\n"
        "print(redirected.closed)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
