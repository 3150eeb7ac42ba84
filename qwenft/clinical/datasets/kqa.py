"""``eval_data=kqa``: K-QA (Manes et al., 2024) -> patient messages scored against physicians' statements.

Input: K-QA's JSON lines (``questions_w_answers.jsonl``), one question a line: ``Question``,
``Free_form_answer``, ``Must_have`` and ``Nice_to_have`` (lists of statements).

* **Scenario and questions**: the patient's message split by qwenft's own prompt parser
  (``qwenft.clinical.parse``), exactly as ``qwenft answer`` would split it: the sentences ending in ``?`` are the
  questions, the rest is the scenario (often empty: most K-QA messages are one question). ``split_questions:
  false`` keeps the whole message as one question.
* **Reference answers**: K-QA has one physician answer per message, so every question of a message gets the
  whole free-form answer as its reference (answer ROUGE-L / F1 compare each answer with it).
* **Summary**: K-QA has no reference summary -- no summary score (NaN).
* **Scores**: ``must_have_coverage`` and ``contradiction`` of all the answers together against the statements
  (K-QA's comprehensiveness and hallucination rate, with the local lexical proxies of
  ``qwenft.metrics.kqa`` instead of the paper's LLM judge -- see there what they do and do not measure).
  Messages without must-have statements are kept; their coverage is NaN.
* **Knowledge base**: none of its own -- set ``eval_data.kb_path`` or use ``retrieval=none``.
"""

from __future__ import annotations

from qwenft.clinical.datasets import EvalData, field_text, file_sha256, read_jsonl, require_path
from qwenft.clinical.parse import parse_prompt
from qwenft.errors import DataError


def _statements(row: dict, key: str, path, line: int) -> list[str]:
    value = row.get(key) or []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise DataError(str(path), line, f"field {key!r} must be a list of strings")
    return [" ".join(s.split()) for s in value if s.strip()]


def load(path: str | None, kb_path: str | None = None, split_questions: bool = True) -> EvalData:
    src = require_path(path, "eval_data.path", "K-QA as JSON lines (questions_w_answers.jsonl)")
    records = []
    for line, row in read_jsonl(src):
        if not isinstance(row, dict):
            raise DataError(str(src), line, "each line must be a JSON object")
        message = field_text(row, "Question", src, line)
        reference = field_text(row, "Free_form_answer", src, line).strip()
        scenario, questions = ("", [" ".join(message.split())])
        if split_questions:
            scenario, questions = parse_prompt(message).units()
        records.append({
            "id": f"kqa-{line}", "scenario": scenario, "questions": questions, "summary": "",
            "answers": [reference] * len(questions),
            "targets": [{"kind": "must_have", "must_have": _statements(row, "Must_have", src, line),
                         "nice_to_have": _statements(row, "Nice_to_have", src, line)}],
        })
    if not records:
        raise DataError(str(src), None, "no questions")
    multi = sum(len(r["questions"]) > 1 for r in records)
    notes = [f"K-QA {src.name}: {len(records)} patient messages ({multi} split into several questions); "
             "must-have coverage and contradiction are lexical proxies (qwenft.metrics.kqa), not the paper's judge"]
    return EvalData("kqa", records, str(src), file_sha256(src), kb_path=str(kb_path) if kb_path else None,
                    needs_kb=True, notes=notes)
