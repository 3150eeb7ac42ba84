"""How a structured clinical record becomes training examples; the ``decomposition`` config group decides.

A model answers best in the shape it was trained in, so training uses exactly the prompts inference builds
(``prompts.py``): ``whole_prompt`` trains the whole prompt -> ``Summary: ...`` + numbered answers (the text rendering
the ``whole_prompt`` strategy parses back); every per-question strategy trains what it generates at inference, one
summary example plus one example per question with the scenario as context. The retrieval strategies differ only
in their queries, so they share the per-question examples. A sweep over ``decomposition=`` therefore also
compares training-time decomposition.

``passages`` (doc id -> text, e.g. from the knowledge base) adds each question's gold documents as the
``Reference:`` block, for training a model to read retrieved context the way inference presents it.
"""

from __future__ import annotations

from qwenft.data.prompts import (
    format_context,
    question_prompt,
    render_response,
    summary_prompt,
    whole_prompt,
)

STRATEGIES = ("whole_prompt", "decomposition", "multi_query", "rag_fusion", "step_back", "hyde")


def _context(doc_ids: list[str], passages: dict[str, str] | None) -> str:
    if not passages:
        return ""
    return format_context([(d, passages[d]) for d in dict.fromkeys(doc_ids) if d in passages])


def to_training_examples(example: dict, strategy: str, passages: dict[str, str] | None = None) -> list[dict]:
    """``{scenario, questions[], summary, answers[], gold_docs?}`` -> ``[{prompt, completion}, ...]``.

    ``strategy`` is a strategy name (``conf/strategy/*.yaml``'s ``name``); an unknown name or questions and
    answers that do not pair up raise ``ValueError``.
    """
    name = getattr(strategy, "name", strategy)
    if name not in STRATEGIES:
        raise ValueError(f"unknown decomposition strategy {name!r} (use one of {', '.join(STRATEGIES)})")
    scenario, questions, answers = example["scenario"], list(example["questions"]), list(example["answers"])
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers: they must pair up")
    gold = list(example.get("gold_docs") or [])
    gold = [list(d) if isinstance(d, list) else [] for d in gold[: len(questions)]]
    gold += [[] for _ in range(len(questions) - len(gold))]
    if name == "whole_prompt":
        everything = [d for docs in gold for d in docs]
        return [{"prompt": whole_prompt(scenario, questions, _context(everything, passages)),
                 "completion": render_response(example["summary"], answers)}]
    out = [{"prompt": summary_prompt(scenario), "completion": example["summary"]}]
    out += [{"prompt": question_prompt(scenario, q, _context(docs, passages)), "completion": a}
            for q, a, docs in zip(questions, answers, gold, strict=True)]
    return out
