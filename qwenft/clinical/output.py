"""The structured answer ``{summary, answers: [{question, answer, evidence}]}``, its text rendering, and the
best-effort reading of a whole-prompt generation back into that structure (the ``whole_prompt`` strategy)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from qwenft.data.prompts import render_response


@dataclass
class Answer:
    question: str
    answer: str
    evidence: list[str] = field(default_factory=list)  # knowledge-base doc ids the answer was given


@dataclass
class Response:
    summary: str
    answers: list[Answer] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_text(self) -> str:
        """Summary, then the answers numbered like the questions (the same rendering training targets use)."""
        return render_response(self.summary, [a.answer for a in self.answers])

    @classmethod
    def from_dict(cls, data: dict) -> Response:
        return cls(str(data["summary"]), [Answer(str(a["question"]), str(a["answer"]), list(a.get("evidence", [])))
                                          for a in data["answers"]])


_SUMMARY = re.compile(r"^\W*summary\W*[:\-]\s*(?:[*_]+\s*)?", re.IGNORECASE)
_ITEM = re.compile(r"^\W*(?:(?:answer|question|q|a)\s*)?(\d{1,3})\s*(?:[*_]+\s*)?(?:[.):]|\s-)[*_]*(?:\s+|$)",
                   re.IGNORECASE)


def parse_response(text: str, questions: list[str]) -> tuple[str, list[str], bool]:
    """A whole-prompt generation -> (summary, one answer per question, format valid?).

    Valid means the expected shape: a ``Summary:`` line and a non-empty numbered answer for every question.
    Otherwise it salvages what it can: the text before the first numbered answer as the summary, and for
    unnumbered text the remaining lines in order (a single question gets all of it).
    """
    n = len(questions)
    summary_lines: list[str] = []
    answers: dict[int, list[str]] = {}
    unnumbered: list[str] = []
    current: list[str] | None = None
    has_label = False
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            current = None if current is summary_lines else current
            continue
        m_sum = _SUMMARY.match(line)
        m_item = _ITEM.match(line)
        if m_sum and not has_label:
            has_label, current = True, summary_lines
            rest = line[m_sum.end():].strip()
            if rest:
                summary_lines.append(rest)
        elif m_item and 1 <= int(m_item.group(1)) <= n and int(m_item.group(1)) not in answers:
            current = answers.setdefault(int(m_item.group(1)), [])
            rest = line[m_item.end():].strip()
            if rest:
                current.append(rest)
        elif current is not None:
            current.append(line)
        elif not answers and not has_label and not summary_lines:
            summary_lines.append(line)
            current = summary_lines
        else:
            unnumbered.append(line)
    summary = " ".join(summary_lines).strip()
    out = [" ".join(answers.get(i + 1, [])).strip() for i in range(n)]
    valid = has_label and bool(summary) and all(out) and len(answers) == n
    if not answers and n:
        if n == 1:
            out = [" ".join(unnumbered).strip() or ("" if has_label else summary)]
        else:
            out = (unnumbered + [""] * n)[:n]
    return summary, out, valid
