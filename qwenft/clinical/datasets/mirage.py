"""``eval_data=mirage``: MIRAGE (Xiong et al., 2024) multiple-choice questions, scored by accuracy.

Input, either of:

* MIRAGE's ``benchmark.json``: ``{subset: {qid: {question, options: {A: ..., B: ...}, answer: "B"}}}`` with the
  subsets ``mmlu``, ``medqa``, ``medmcqa``, ``pubmedqa``, ``bioasq`` (``subsets`` picks some; default all);
* JSON lines, one question a line, with the same three fields (and optionally ``id``).

* **Record**: the question stem split by qwenft's prompt parser -- a MedQA vignette's case sentences become the
  scenario, its question sentence(s) the one question -- and the options appended to that question as
  "A. ...", one a line. Retrieval queries therefore see the options (MIRAGE's question-only-retrieval setting
  would leave them out; qwenft's strategies query with the question as the model reads it).
* **Reference answer**: "B. <option text>" (for ROUGE-L / F1); no summary (NaN).
* **Score**: ``mc_accuracy`` -- the letter read from the answer (``qwenft.metrics.choice``) equals the key.
* **Knowledge base**: a MedRAG corpus (``{id, title, content}`` JSONL: textbooks, StatPearls, PubMed or
  Wikipedia chunks) through ``eval_data.kb_path``, or ``retrieval=none`` for the closed-book setting.
* **Order**: subsets in the order given, questions in file order; ``n_prompts`` takes the first N -- use
  ``subsets=[medqa]`` to evaluate one.
"""

from __future__ import annotations

import json
from pathlib import Path

from qwenft.clinical.datasets import EvalData, file_sha256, read_jsonl, require_path
from qwenft.clinical.parse import parse_prompt
from qwenft.errors import DataError, UserError

SUBSETS = ("mmlu", "medqa", "medmcqa", "pubmedqa", "bioasq")


def record(qid: str, item: object, where: tuple[str, int | None]) -> dict:
    """One multiple-choice question -> a clinical record with a ``choice`` target."""
    path, line = where
    if not isinstance(item, dict):
        raise DataError(path, line, f"question {qid}: expected an object with question, options, answer")
    stem, options, key = item.get("question"), item.get("options"), item.get("answer")
    if not isinstance(stem, str) or not stem.strip():
        raise DataError(path, line, f"question {qid}: 'question' must be a non-empty string")
    if not isinstance(options, dict) or len(options) < 2 or not all(
            isinstance(k, str) and len(k) == 1 and k.isalpha() and isinstance(v, str) for k, v in options.items()):
        raise DataError(path, line, f"question {qid}: 'options' must map letters to option texts (2 or more)")
    options = {k.upper(): " ".join(v.split()) for k, v in options.items()}
    if not isinstance(key, str) or key.strip().upper() not in options:
        raise DataError(path, line, f"question {qid}: 'answer' must be one of the option letters {sorted(options)}")
    key = key.strip().upper()
    scenario, questions = parse_prompt(stem).units()
    question = " ".join(" ".join(questions).split()) + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
    return {"id": qid, "scenario": scenario, "questions": [question], "summary": "",
            "answers": [f"{key}. {options[key]}"],
            "targets": [{"kind": "choice", "question": 0, "options": options, "answer": key}]}


def load(path: str | None, kb_path: str | None = None, subsets: list[str] | None = None) -> EvalData:
    src = require_path(path, "eval_data.path", "MIRAGE benchmark.json (or JSON lines of question, options, answer)")
    records: list[dict] = []
    if src.suffix == ".json":
        try:
            data = json.loads(src.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(str(src), err.lineno, f"malformed JSON: {err.msg}") from None
        except UnicodeDecodeError as err:
            raise DataError(str(src), None, f"not UTF-8 (byte {err.start})") from None
        if not isinstance(data, dict):
            raise DataError(str(src), None, "expected {subset: {id: {question, options, answer}}}")
        chosen = list(subsets) if subsets else [s for s in SUBSETS if s in data] or list(data)
        missing = [s for s in chosen if s not in data]
        if missing:
            raise UserError(f"eval_data.subsets: {', '.join(missing)} not in {src} (it has {', '.join(data)})")
        for subset in chosen:
            if not isinstance(data[subset], dict):
                raise DataError(str(src), None, f"subset {subset!r} must map ids to questions")
            records += [record(f"{subset}-{qid}", item, (str(src), None)) for qid, item in data[subset].items()]
    else:
        if subsets:
            raise UserError("eval_data.subsets applies to MIRAGE's benchmark.json, not to a JSON-lines file")
        for line, item in read_jsonl(src):
            qid = str(item.get("id", f"q{line}")) if isinstance(item, dict) else f"q{line}"
            records.append(record(qid, item, (str(src), line)))
    if not records:
        raise DataError(str(src), None, "no questions")
    notes = [f"MIRAGE {src.name}: {len(records)} multiple-choice questions"
             + (f" ({', '.join(subsets)})" if subsets else "") + "; options are part of the question and the query"]
    return EvalData("mirage", records, str(Path(src)), file_sha256(src), kb_path=str(kb_path) if kb_path else None,
                    needs_kb=True, notes=notes)
