"""Multiple-choice accuracy (MIRAGE / MedQA style): which option letter did a free-text answer choose?

The letter is read in this order, first hit wins (only letters that are options count):

1. an explicit statement: ``answer is B``, ``answer: (B)``, ``option B``, ``choice B``;
2. a marked letter at the start of the answer or of a line: ``B.``, ``B)``, ``(B)``, ``B:``, ``**B**``, or the
   answer being just ``B``;
3. otherwise the option *texts*: if exactly one option's text (normalised) appears in the answer, its letter
   (an option text found only inside a longer found one does not count).

No letter -- or several option texts and no letter -- is a wrong answer, never a guess. An article ("A patient
...") is not read as option A: rule 2 needs the letter to be marked or alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from qwenft.metrics.text import normalize_answer

_EXPLICIT = re.compile(r"\b(?:answer\s*(?:is|:)?|option|choice)\s*[:\-]?\s*[(\[*]*([A-Z])\b(?![-'])", re.IGNORECASE)
_MARKED = re.compile(r"^[\s>*_#]*(?:\(([A-Z])\)|([A-Z])\s*[.):](?!\w)|\*\*([A-Z])\*\*|([A-Z])\s*$)", re.MULTILINE)


def parse_choice(answer: str, options: Mapping[str, str]) -> str | None:
    """The option letter ``answer`` chose, or None (see the module docstring for the rules)."""
    letters = {k.upper() for k in options}
    for m in _EXPLICIT.finditer(answer):
        if m.group(1).upper() in letters and (m.group(1).isupper() or "answer" in m.group(0).lower()):
            return m.group(1).upper()
    for m in _MARKED.finditer(answer):
        letter = next(g for g in m.groups() if g)
        if letter in letters:
            return letter
    text = f" {normalize_answer(answer)} "
    found = {k.upper(): f" {normalize_answer(v)} " for k, v in options.items()
             if normalize_answer(v) and f" {normalize_answer(v)} " in text}
    # "hemophilia a" also contains option "hemophilia": keep only texts not inside another found one
    kept = [k for k, v in found.items() if not any(v != w and v in w for w in found.values())]
    return kept[0] if len(kept) == 1 else None


def choice_correct(answer: str, options: Mapping[str, str], gold: str) -> float:
    """1.0 when the chosen letter is the gold one, else 0.0 (no readable choice is wrong)."""
    return float(parse_choice(answer, options) == gold.strip().upper())
