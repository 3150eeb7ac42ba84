"""``eval_data=agentclinic``: AgentClinic OSCE cases (Schmidgall et al., 2024) -> a written scenario + questions.

Input: AgentClinic's JSON lines (``agentclinic_medqa.jsonl`` and the other ``agentclinic_*.jsonl``), one case a
line: ``{"OSCE_Examination": {Objective_for_Doctor, Patient_Actor, Physical_Examination_Findings, Test_Results,
Correct_Diagnosis}}``.

* **Scenario**: the case record written out as text -- demographics, history, symptoms, past medical / social
  history, review of systems, then the examination findings (nested fields as "Vital Signs - Temperature:
  36.6°C; ...").
* **Questions** (``questions``, in this order):

  - ``diagnosis``: "What is the most likely diagnosis?" -- reference ``Correct_Diagnosis``, scored by
    ``diagnosis_match`` (``qwenft.metrics.diagnosis``: normalised containment; add ``synonyms_path``, a JSON
    object ``{diagnosis: [synonym, ...]}``, for synonyms you stand behind -- none are shipped);
  - ``tests``: "Which investigations would confirm the diagnosis, and what would they show?" -- reference the
    case's test results written out (ROUGE-L / F1 only); not asked of a case without test results.

* **Test results** go in the scenario only when the ``tests`` question is not asked: they often state the
  diagnosis outright ("biopsy consistent with pyoderma gangrenosum": 16 of the 107 MedQA cases), so by default
  the diagnosis is made from history and examination, the OSCE's first stage, and the tests are asked for.
* **Summary** (reference): "<demographics> presenting with <presentation>", the presentation taken from
  ``Objective_for_Doctor`` ("... presenting with X") or else the main symptom.
* **Knowledge base**: none of its own -- set ``eval_data.kb_path`` (e.g. MedQuAD's answers, or a MedRAG corpus)
  or use ``retrieval=none``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from qwenft.clinical.datasets import EvalData, file_sha256, read_jsonl, require_path
from qwenft.errors import DataError, UserError

QUESTIONS = {
    "diagnosis": "What is the most likely diagnosis?",
    "tests": "Which investigations would confirm the diagnosis, and what would they show?",
}
_HISTORY = (("History", None), ("Symptoms", "Symptoms"), ("Past_Medical_History", "Past medical history"),
            ("Social_History", "Social history"), ("Review_of_Systems", "Review of systems"))


def _label(key: str) -> str:
    return " ".join(key.replace("_", " ").split())


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if not text or text[-1] in ".!?" else text + "."


def write_out(value: Any) -> str:
    """A nested case field as text: ``{"Vital_Signs": {"Heart_Rate": "72 bpm"}, "Reflexes": "Normal."}`` ->
    "Vital Signs - Heart Rate: 72 bpm; Reflexes: Normal" (lists joined with "; ", trailing full stops dropped)."""
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            inner = write_out(v)
            if inner:
                parts.append(f"{_label(k)} - {inner}" if isinstance(v, dict) else f"{_label(k)}: {inner}")
        return "; ".join(parts)
    if isinstance(value, list):
        return "; ".join(s for s in (write_out(v) for v in value) if s)
    return " ".join(str(value).split()).rstrip(".") if value is not None else ""


def _symptoms(value: Any) -> str:
    if isinstance(value, dict):
        primary = value.get("Primary_Symptom")
        secondary = value.get("Secondary_Symptoms") or []
        parts = [f"Main symptom: {write_out(primary)}." if primary else ""]
        if secondary:
            parts.append(f"Other symptoms: {write_out(secondary)}.")
        return " ".join(p for p in parts if p)
    return _sentence(write_out(value))


def scenario_of(case: dict, with_tests: bool) -> str:
    actor = case.get("Patient_Actor") or {}
    parts = [_sentence(f"A {actor['Demographics']}") if actor.get("Demographics") else ""]
    for key, label in _HISTORY:
        if actor.get(key):
            body = _symptoms(actor[key]) if key == "Symptoms" else _sentence(write_out(actor[key]))
            parts.append(body if label in (None, "Symptoms") else f"{label}: {body}")
    for key, value in actor.items():  # medications and any other field a case adds
        if key not in {"Demographics", *(k for k, _ in _HISTORY)} and write_out(value):
            parts.append(f"{_label(key)}: {_sentence(write_out(value))}")
    if case.get("Physical_Examination_Findings"):
        parts.append("Examination: " + _sentence(write_out(case["Physical_Examination_Findings"])))
    if with_tests and case.get("Test_Results"):
        parts.append("Test results: " + _sentence(write_out(case["Test_Results"])))
    return " ".join(p for p in parts if p)


def summary_of(case: dict) -> str:
    """"A <demographics> presenting with <presentation>": the objective's "presenting with ..." when it has one,
    else the main symptom."""
    actor = case.get("Patient_Actor") or {}
    objective = " ".join(str(case.get("Objective_for_Doctor") or "").split())
    m = re.search(r"\bpresenting with (.+)", objective, re.IGNORECASE)
    symptoms = actor.get("Symptoms")
    primary = symptoms.get("Primary_Symptom") if isinstance(symptoms, dict) else None
    presentation = m.group(1).rstrip(". ") if m else write_out(primary).lower() if primary else ""
    who = f"A {(actor.get('Demographics') or 'patient').strip()}"
    return _sentence(f"{who} presenting with {presentation}" if presentation else who)


def read_synonyms(path: str | None) -> dict[str, list[str]]:
    if not path:
        return {}
    p = require_path(path, "eval_data.synonyms_path", "a JSON object {diagnosis: [synonym, ...]}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(str(p), getattr(err, "lineno", None), f"malformed JSON: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                             for v in data.values()):
        raise DataError(str(p), None, "must be a JSON object mapping each diagnosis to a list of strings")
    return {k.strip().lower(): v for k, v in data.items()}


def build(cases: list[tuple[int, dict]], questions: list[str], synonyms: dict[str, list[str]],
          path: Path) -> list[dict]:
    unknown = [q for q in questions if q not in QUESTIONS]
    if unknown or not questions:
        raise UserError(f"eval_data.questions={questions}: choose from {', '.join(QUESTIONS)}")
    records = []
    for line, row in cases:
        case = row.get("OSCE_Examination") if isinstance(row, dict) else None
        if not isinstance(case, dict):
            raise DataError(str(path), line, "expected an object with 'OSCE_Examination'")
        diagnosis = case.get("Correct_Diagnosis")
        if not isinstance(diagnosis, str) or not diagnosis.strip():
            raise DataError(str(path), line, "OSCE_Examination.Correct_Diagnosis must be a non-empty string")
        tests = write_out(case.get("Test_Results"))
        asked = [q for q in questions if q != "tests" or tests]  # a case without results is not asked for them
        answers = {"diagnosis": diagnosis.strip(), "tests": _sentence(tests)}
        scenario = scenario_of(case, with_tests="tests" not in asked)
        if not scenario:
            raise DataError(str(path), line, "the case has no Patient_Actor or examination to write a scenario")
        if not asked:
            raise DataError(str(path), line, "no Test_Results for the only question, 'tests'")
        targets = [{"kind": "diagnosis", "question": asked.index("diagnosis"), "answer": diagnosis.strip(),
                    "synonyms": synonyms.get(diagnosis.strip().lower(), [])}] if "diagnosis" in asked else []
        records.append({"id": f"agentclinic-{line}", "scenario": scenario,
                        "questions": [QUESTIONS[q] for q in asked], "summary": summary_of(case),
                        "answers": [answers[q] for q in asked], "targets": targets})
    return records


def load(path: str | None, kb_path: str | None = None, questions: list[str] | tuple[str, ...] = ("diagnosis", "tests"),
         synonyms_path: str | None = None) -> EvalData:
    src = require_path(path, "eval_data.path", "AgentClinic OSCE cases as JSON lines (agentclinic_medqa.jsonl)")
    cases = list(read_jsonl(src))
    if not cases:
        raise DataError(str(src), None, "no cases")
    records = build(cases, list(questions), read_synonyms(synonyms_path), src)
    notes = [f"AgentClinic {src.name}: {len(records)} cases; questions: {', '.join(questions)}; test results "
             + ("asked for, not in the scenario" if "tests" in questions else "in the scenario")]
    return EvalData("agentclinic", records, str(src), file_sha256(src), kb_path=str(kb_path) if kb_path else None,
                    needs_kb=True, notes=notes)
