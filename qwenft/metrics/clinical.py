"""Clinical-answer metrics, with rouge-score directly (``evaluate.load`` needs the hub)."""

from __future__ import annotations

import re
import string
from collections import Counter

from rouge_score import rouge_scorer

_ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(pred: str, ref: str) -> float:
    return _ROUGE.score(ref, pred)["rougeL"].fmeasure if pred.strip() and ref.strip() else 0.0


def _norm_tokens(text: str) -> list[str]:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def token_f1(pred: str, ref: str) -> float:
    p, r = _norm_tokens(pred), _norm_tokens(ref)
    common = sum((Counter(p) & Counter(r)).values())
    if not p or not r or not common:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def recall_at_k(retrieved: list[str], gold: list[str]) -> float:
    return len(set(retrieved) & set(gold)) / len(set(gold)) if gold else float("nan")


def mrr(retrieved: list[str], gold: list[str]) -> float:
    return next((1.0 / r for r, d in enumerate(retrieved, 1) if d in set(gold)), 0.0)


def new_term_recall(pred: str, ref: str, new_words: list[str]) -> float:
    """Share of the new words in the reference that the prediction reproduces with exact spelling."""
    wanted = [w for w in new_words if re.search(rf"\b{re.escape(w)}\b", ref)]
    if not wanted:
        return float("nan")
    return sum(bool(re.search(rf"\b{re.escape(w)}\b", pred)) for w in wanted) / len(wanted)


def score_prediction(response, reference: dict, trace: dict) -> dict[str, float]:
    """One prompt: ``response`` (output.Response) against a clinical record with summary/answers/gold_docs."""
    answers = [a.answer for a in response.answers]
    refs = reference["answers"]
    gold = reference.get("gold_docs") or [[] for _ in refs]
    words = reference.get("new_words") or []
    pred_all = " ".join([response.summary, *answers])
    ref_all = " ".join([reference["summary"], *refs])
    retrieved = trace.get("retrieved") or [[] for _ in refs]
    per_q = list(zip(answers, refs, gold, retrieved, strict=False))
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {
        "summary_rougeL": rouge_l(response.summary, reference["summary"]),
        "answer_rougeL": mean([rouge_l(a, r) for a, r, _, _ in per_q]),
        "answer_f1": mean([token_f1(a, r) for a, r, _, _ in per_q]),
        "coverage": mean([1.0 if a.strip() else 0.0 for a, _, _, _ in per_q]),
        "format_valid": 1.0 if trace.get("format_valid", True) and len(answers) == len(refs) else 0.0,
        "recall_at_k": mean([recall_at_k(d, g) for _, _, g, d in per_q if g]) if any(gold) else float("nan"),
        "mrr": mean([mrr(d, g) for _, _, g, d in per_q if g]) if any(gold) else float("nan"),
        "new_term_recall": new_term_recall(pred_all, ref_all, words),
    }


def aggregate(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys() if rows else []
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if r[k] == r[k]]  # skip NaN
        out[k] = sum(vals) / len(vals) if vals else float("nan")
    return out
