"""The structured answer: ``{summary, answers: [{question, answer, evidence}]}`` and its text rendering."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from qwenft.decomposition.templates import render_response


@dataclass
class Answer:
    question: str
    answer: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class Response:
    summary: str
    answers: list[Answer] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    def to_text(self) -> str:
        return render_response(self.summary, [a.answer for a in self.answers])


NUMBERED = re.compile(r"^\s*(\d+)\s*[.)]\s*(.*)$")


def parse_response(text: str, questions: list[str]) -> tuple[str, list[str], bool]:
    """Read a whole-prompt generation back into (summary, one answer per question, format valid?)."""
    summary, answers = "", {}
    for line in text.strip().splitlines():
        if line.lower().startswith("summary:"):
            summary = line.split(":", 1)[1].strip()
            continue
        m = NUMBERED.match(line)
        if m and 1 <= int(m.group(1)) <= len(questions):
            answers.setdefault(int(m.group(1)), m.group(2).strip())
    valid = bool(summary) and len(answers) == len(questions)
    return summary, [answers.get(i + 1, "") for i in range(len(questions))], valid
