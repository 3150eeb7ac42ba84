"""Scores for clinical answers, computed locally (``evaluate.load`` needs the hub; rouge-score does not).

Per prompt: summary ROUGE-L; per-question answer ROUGE-L and SQuAD token F1 (averaged over the prompt's
questions); coverage (share of questions with a non-empty answer); format validity; retrieval recall@k and MRR
against gold documents, where known; new-term recall (share of the reference's new words the response
reproduces with exact spelling -- the point of teaching a model new vocabulary). :func:`aggregate` averages
prompts, skipping NaN (a metric that does not apply to a prompt, e.g. recall without gold documents).

``hit_at_k`` is the share of questions with *any* gold document retrieved: the gold list of a question may hold
several equivalent documents (MedQuAD repeats some answers verbatim under several ids), where recall would ask
for all of them. A record without a gold summary (``summary`` empty) has no summary score (NaN).

Records built from real data sets carry ``targets``, extra per-prompt scoring (``qwenft.clinical.datasets``):

* ``{"kind": "diagnosis", "question": i, "answer": "...", "synonyms": [...]}`` -> ``diagnosis_match`` of
  answer ``i`` (:mod:`qwenft.metrics.diagnosis`);
* ``{"kind": "must_have", "must_have": [...], "nice_to_have": [...]}`` -> ``must_have_coverage`` and
  ``contradiction`` of all the answers together (K-QA proxies, :mod:`qwenft.metrics.kqa`);
* ``{"kind": "choice", "question": i, "options": {"A": ...}, "answer": "B"}`` -> ``mc_accuracy`` of answer ``i``
  (:mod:`qwenft.metrics.choice`).
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter

from absl import logging as absl_logging
from rouge_score import rouge_scorer

from qwenft.metrics.choice import choice_correct
from qwenft.metrics.diagnosis import diagnosis_match
from qwenft.metrics.kqa import contradiction_rate, must_have_coverage
from qwenft.metrics.text import normalize_answer

# rouge_score imports absl, whose (never attached) handler binds to whatever ``sys.stderr`` is at import time.
# Hydra's logging dictConfig later closes every handler ever made, and absl closes a stream that is not the
# current sys.stderr: under pytest's capture or a notebook's redirect that closes the host's stream. Bound to the
# process's own stderr, absl leaves it open.
absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__

_ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of stemmed tokens); 0 when either side is empty."""
    if not pred.strip() or not ref.strip():
        return 0.0
    return _ROUGE.score(ref, pred)["rougeL"].fmeasure


def token_f1(pred: str, ref: str) -> float:
    """SQuAD token F1 on normalised tokens; two empty answers agree (1.0), one empty scores 0."""
    p, r = normalize_answer(pred).split(), normalize_answer(ref).split()
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def coverage(answers: list[str]) -> float:
    """Share of questions that received a non-empty answer."""
    return sum(bool(a.strip()) for a in answers) / len(answers) if answers else float("nan")


def recall_at_k(retrieved: list[str], gold: list[str], k: int | None = None) -> float:
    """Share of the gold documents among the first ``k`` retrieved (all retrieved when ``k`` is None)."""
    if not gold:
        return float("nan")
    top = retrieved if k is None else retrieved[:k]
    return len(set(top) & set(gold)) / len(set(gold))


def mrr(retrieved: list[str], gold: list[str]) -> float:
    """Reciprocal rank of the first gold document (0 when none was retrieved)."""
    if not gold:
        return float("nan")
    wanted = set(gold)
    return next((1.0 / rank for rank, d in enumerate(retrieved, 1) if d in wanted), 0.0)


def _contains(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None


def new_term_recall(pred: str, ref: str, new_words: list[str]) -> float:
    """Share of the new words present in ``ref`` that ``pred`` reproduces with exact spelling (case included)."""
    wanted = [w for w in dict.fromkeys(new_words) if w and _contains(ref, w)]
    if not wanted:
        return float("nan")
    return sum(_contains(pred, w) for w in wanted) / len(wanted)


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def score_prediction(response, reference: dict, trace: dict | None = None,
                     new_words: list[str] | None = None) -> dict[str, float]:
    """One prompt: ``response`` (``output.Response``) against a clinical record
    ``{summary, answers, gold_docs?, new_words?}``; ``trace`` is what ``stages.answer`` returned with it.
    ``new_words`` stands in when the record has none (e.g. the words file of the data set)."""
    trace = trace or {}
    refs = list(reference["answers"])
    answers = [a.answer for a in response.answers]
    paired = answers[: len(refs)] + [""] * (len(refs) - len(answers))
    gold = list(reference.get("gold_docs") or [])
    retrieved = list(trace.get("retrieved") or [a.evidence for a in response.answers])
    words = reference.get("new_words") or new_words or []
    pred_all = " ".join([response.summary, *answers])
    ref_all = " ".join([reference["summary"], *refs])
    per_q_gold = [(retrieved[i] if i < len(retrieved) else [], g) for i, g in enumerate(gold) if g]
    if trace.get("retrieval") is False:  # nothing was searched: recall does not apply
        per_q_gold = []
    has_summary = bool(str(reference.get("summary") or "").strip())
    return {
        "summary_rougeL": rouge_l(response.summary, reference["summary"]) if has_summary else float("nan"),
        "answer_rougeL": _mean([rouge_l(a, r) for a, r in zip(paired, refs, strict=True)]),
        "answer_f1": _mean([token_f1(a, r) for a, r in zip(paired, refs, strict=True)]),
        "coverage": coverage(paired),
        "format_valid": float(bool(trace.get("format_valid", True)) and len(answers) == len(refs)
                              and bool(response.summary.strip())),
        "recall_at_k": _mean([recall_at_k(d, g) for d, g in per_q_gold]) if per_q_gold else float("nan"),
        "hit_at_k": _mean([float(bool(set(d) & set(g))) for d, g in per_q_gold]) if per_q_gold else float("nan"),
        "mrr": _mean([mrr(d, g) for d, g in per_q_gold]) if per_q_gold else float("nan"),
        "new_term_recall": new_term_recall(pred_all, ref_all, words),
        **score_targets(response, reference.get("targets") or []),
    }


TARGET_METRICS = ("diagnosis_match", "must_have_coverage", "contradiction", "mc_accuracy")


def score_targets(response, targets: list[dict]) -> dict[str, float]:
    """The data set's own scores (module docstring); NaN for a kind the record does not have."""

    answers = [a.answer for a in response.answers]

    def answer_of(t: dict) -> str:
        i = t.get("question")
        return answers[i] if i is not None and 0 <= i < len(answers) else " ".join(answers)

    found: dict[str, list[float]] = {m: [] for m in TARGET_METRICS}
    for t in targets:
        kind = t.get("kind")
        if kind == "diagnosis":
            found["diagnosis_match"].append(diagnosis_match(answer_of(t), t["answer"], t.get("synonyms") or ()))
        elif kind == "must_have":
            whole = " ".join(answers)  # the answers, not the summary (which restates the question)
            found["must_have_coverage"].append(must_have_coverage(whole, t.get("must_have") or []))
            found["contradiction"].append(contradiction_rate(whole, [*(t.get("must_have") or []),
                                                                     *(t.get("nice_to_have") or [])]))
        elif kind == "choice":
            found["mc_accuracy"].append(choice_correct(answer_of(t), t["options"], t["answer"]))
        else:
            raise ValueError(f"unknown target kind {kind!r} (diagnosis, must_have, choice)")
    return {m: _mean(v) if v else float("nan") for m, v in found.items()}


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over prompts, NaN skipped (NaN only when no prompt had the metric)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: _mean([float(r[k]) for r in rows if k in r]) for k in keys}
