"""Split a clinical prompt into its scenario and its questions, whatever the question format.

Recognised: numbered (``1.``, ``1)``, ``Q1:``), lettered (``a)``, ``(b)``, ``A.``), bulleted (``-``, ``*``, ``•``)
items on their own lines, and -- when there are no such items -- the trailing sentences ending in ``?``. The
question text is kept exactly (marker removed, surrounding whitespace stripped). A prompt with no question at
all parses to the whole text as the scenario and no questions (strategies then answer it as one question).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qwenft.errors import UserError

ITEM = re.compile(r"^\s*(?:Q\s*\d+\s*[:.)]|\d+\s*[.)]|\(\s*[A-Za-z]\s*\)|[A-Za-z]\s*[.)]|[-*•])\s+(?P<q>\S.*)$")
HEADER = re.compile(r"^\s*(?:questions?|please answer(?: the following)?)\s*:?\s*$", re.IGNORECASE)
SENTENCE = re.compile(r"[^.?!]+(?:[.?!]+|$)")


@dataclass
class Parsed:
    scenario: str
    questions: list[str] = field(default_factory=list)


def parse_prompt(text: str) -> Parsed:
    if not isinstance(text, str) or not text.strip():
        raise UserError("empty prompt: give a scenario followed by one or more questions")
    lines = text.strip().splitlines()
    first = next((i for i, line in enumerate(lines) if ITEM.match(line)), None)
    if first is not None:
        questions: list[str] = []
        for line in lines[first:]:
            m = ITEM.match(line)
            if m:
                questions.append(m.group("q").strip())
            elif line.strip() and not HEADER.match(line):
                questions[-1] = f"{questions[-1]} {line.strip()}"
        scenario_lines = [ln for ln in lines[:first] if not HEADER.match(ln)]
        scenario = "\n".join(scenario_lines).strip()
        if scenario or len(questions) > 1:
            return Parsed(scenario, questions)
    flat = " ".join(line.strip() for line in lines if not HEADER.match(line))
    spans = [m for m in SENTENCE.finditer(flat) if m.group().strip()]
    k = len(spans)
    while k > 0 and spans[k - 1].group().strip().endswith("?"):
        k -= 1
    questions = [m.group().strip() for m in spans[k:]]
    if not questions:
        return Parsed(text.strip(), [])
    return Parsed(flat[: spans[k].start()].strip(), questions)  # the scenario verbatim (decimals intact)
