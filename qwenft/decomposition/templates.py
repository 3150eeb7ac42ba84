"""The prompt texts shared by training and inference, so that both see exactly the same formatting."""

from __future__ import annotations

SUMMARY_INSTRUCTION = "Summarise the clinical scenario in one sentence."
WHOLE_INSTRUCTION = (
    "Read the clinical scenario and answer every question. Start with 'Summary:' and one sentence, then "
    "number the answers like the questions."
)


def question_prompt(scenario: str, question: str, context: str = "") -> str:
    """One sub-question, answered with the scenario (and retrieved passages, if any) as context."""
    ctx = f"Reference:\n{context}\n\n" if context else ""
    return f"{ctx}Scenario: {scenario}\n\nQuestion: {question}\nAnswer in one sentence."


def summary_prompt(scenario: str) -> str:
    return f"Scenario: {scenario}\n\n{SUMMARY_INSTRUCTION}"


def whole_prompt(scenario: str, questions: list[str], context: str = "") -> str:
    ctx = f"Reference:\n{context}\n\n" if context else ""
    qs = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
    return f"{ctx}Scenario: {scenario}\n\nQuestions:\n{qs}\n\n{WHOLE_INSTRUCTION}"


def render_response(summary: str, answers: list[str]) -> str:
    """The readable rendering: summary, then numbered answers (also the `none` strategy's target)."""
    return f"Summary: {summary}\n" + "\n".join(f"{i}. {a}" for i, a in enumerate(answers, 1))
