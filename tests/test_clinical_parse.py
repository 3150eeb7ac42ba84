"""Prompt parsing on every question format, on real AgentClinic vignettes, and fuzzed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwenft.decomposition.output import Answer, Response, parse_response
from qwenft.decomposition.parse import parse_prompt
from qwenft.errors import UserError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
QS = ["What is the most likely diagnosis?", "Which test confirms it (and why)?", "What is the first-line treatment?"]
FORMATS = {
    "numbered_dot": lambda i, q: f"{i}. {q}",
    "numbered_paren": lambda i, q: f"{i}) {q}",
    "q_colon": lambda i, q: f"Q{i}: {q}",
    "lettered_paren": lambda i, q: f"{'abc'[i - 1]}) {q}",
    "lettered_wrapped": lambda i, q: f"({'abc'[i - 1]}) {q}",
    "lettered_upper": lambda i, q: f"{'ABC'[i - 1]}. {q}",
    "dash": lambda i, q: f"- {q}",
    "star": lambda i, q: f"* {q}",
    "bullet": lambda i, q: f"• {q}",
}


def agentclinic_scenarios(n: int = 30) -> list[str]:
    path = DATA / "agentclinic_medqa.jsonl"
    if not path.exists():
        pytest.skip("../shared/data not present")
    out = []
    for line in path.read_text().splitlines()[:n]:
        osce = json.loads(line)["OSCE_Examination"]
        pa = osce["Patient_Actor"]
        out.append(f"{pa['Demographics']}. {pa['History']} Symptoms: {pa['Symptoms']['Primary_Symptom']}.")
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_formats_on_real_vignettes(fmt):
    for scenario in agentclinic_scenarios():
        items = "\n".join(FORMATS[fmt](i, q) for i, q in enumerate(QS, 1))
        parsed = parse_prompt(f"{scenario}\n\nQuestions:\n{items}")
        assert parsed.questions == QS, fmt
        assert parsed.scenario == scenario


def test_inline_questions_after_the_scenario():
    for scenario in agentclinic_scenarios(10):
        parsed = parse_prompt(f"{scenario} {QS[0]} {QS[2]}")
        assert parsed.questions == [QS[0], QS[2]]
        assert parsed.scenario.rstrip() == scenario.rstrip()


def test_continuation_lines_join_their_question_and_no_question_means_scenario_only():
    p = parse_prompt("A man has fever.\n1. What is the cause\n   of the fever?\n2. What next?")
    assert p.questions == ["What is the cause of the fever?", "What next?"]
    assert parse_prompt("A man has fever.").questions == []
    with pytest.raises(UserError):
        parse_prompt("   ")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_parser_never_raises_on_nonempty_text(text):
    if not text.strip():
        with pytest.raises(UserError):
            parse_prompt(text)
        return
    parsed = parse_prompt(text)
    assert isinstance(parsed.scenario, str) and all(isinstance(q, str) and q for q in parsed.questions)


def test_response_json_text_and_parse_back():
    r = Response("A man with fever.", [Answer("Cause?", "Influenza.", ["d1"]), Answer("Next?", "Rest.", [])])
    assert json.loads(r.to_json())["answers"][0] == {"question": "Cause?", "answer": "Influenza.", "evidence": ["d1"]}
    text = r.to_text()
    assert text == "Summary: A man with fever.\n1. Influenza.\n2. Rest."
    assert parse_response(text, ["Cause?", "Next?"]) == ("A man with fever.", ["Influenza.", "Rest."], True)
    assert parse_response("1. Influenza.", ["Cause?", "Next?"])[2] is False
