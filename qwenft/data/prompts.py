"""The prompt texts shared by training and inference, so that a fine-tuned model is asked at test time exactly
what it was trained on (``training.py`` and ``strategies.py`` both build their prompts here).

Query-rewriting prompts are not here: they belong to a strategy and live in ``conf/strategy/*.yaml``.
"""

from __future__ import annotations

SUMMARY_INSTRUCTION = "Summarise the clinical scenario in one sentence."
QUESTION_INSTRUCTION = "Answer in one sentence."
WHOLE_INSTRUCTION = (
    "Read the clinical scenario and answer every question. Start with 'Summary:' and one sentence, then "
    "number the answers like the questions."
)


def format_context(passages: list[tuple[str, str]]) -> str:
    """Retrieved passages as ``[doc id] text`` lines: the id lets a reader check the evidence."""
    return "\n".join(f"[{doc_id}] {text}" for doc_id, text in passages)


def _reference(context: str) -> str:
    return f"Reference:\n{context}\n\n" if context else ""


def _scene(scenario: str) -> str:
    return f"Scenario: {scenario}\n\n" if scenario else ""


def question_prompt(scenario: str, question: str, context: str = "") -> str:
    """One sub-question, answered with the scenario (and retrieved passages, if any) as context.

    The scenario comes first: it is what the summary and every sub-question of a prompt share, so a batch of
    them shares its longest token prefix and ``generate.py`` prefills it once; passages differ per question."""
    return f"{_scene(scenario)}{_reference(context)}Question: {question}\n{QUESTION_INSTRUCTION}"


def summary_prompt(scenario: str) -> str:
    return f"{_scene(scenario)}{SUMMARY_INSTRUCTION}"


def whole_prompt(scenario: str, questions: list[str], context: str = "") -> str:
    """The ``whole_prompt`` strategy's single prompt: the questions renumbered 1..n whatever their original format."""
    qs = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
    return f"{_scene(scenario)}{_reference(context)}Questions:\n{qs}\n\n{WHOLE_INSTRUCTION}"


def render_response(summary: str, answers: list[str]) -> str:
    """The readable rendering: summary, then numbered answers (also the ``whole_prompt`` strategy's training target)."""
    return "\n".join([f"Summary: {summary}", *(f"{i}. {a}" for i, a in enumerate(answers, 1))])
