"""Metrics: new-word perplexity and bits per byte, clinical-answer metrics."""

from pathlib import Path


def clinical_answer_path() -> str:
    """The folder of the ``evaluate`` module ``clinical_answer`` (``evaluate.load(clinical_answer_path())``)."""
    return str(Path(__file__).resolve().parent / "clinical_answer" / "clinical_answer.py")
