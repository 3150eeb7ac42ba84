"""Prompt parsing on every question format, on real AgentClinic vignettes, and fuzzed; the output structure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwenft.clinical.output import Answer, Response, parse_response
from qwenft.clinical.parse import EmptyPromptError, parse_prompt
from qwenft.errors import UserError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
QS = ["What is the most likely diagnosis?", "Which test confirms it (and why)?",
      "What dose of 2.5 mg/kg is safe, e.g. in renal failure?", "List two complications."]
LETTERS = "abcdefgh"
FORMATS = {
    "numbered_dot": lambda i, q: f"{i}. {q}",
    "numbered_paren": lambda i, q: f"{i}) {q}",
    "numbered_wrapped": lambda i, q: f"({i}) {q}",
    "q_colon": lambda i, q: f"Q{i}: {q}",
    "question_n": lambda i, q: f"Question {i}: {q}",
    "lettered_paren": lambda i, q: f"{LETTERS[i - 1]}) {q}",
    "lettered_wrapped": lambda i, q: f"({LETTERS[i - 1]}) {q}",
    "lettered_upper": lambda i, q: f"{LETTERS[i - 1].upper()}. {q}",
    "dash": lambda i, q: f"- {q}",
    "star": lambda i, q: f"* {q}",
    "bullet": lambda i, q: f"• {q}",
}


def agentclinic_cases(n: int = 25) -> list[dict]:
    path = DATA / "agentclinic_medqa.jsonl"
    if not path.exists():
        pytest.skip("../shared/data not present")
    return [json.loads(line)["OSCE_Examination"] for line in path.read_text().splitlines()[:n]]


def flat_scenario(osce: dict) -> str:
    pa = osce["Patient_Actor"]
    return f"A {pa['Demographics']}. {pa['History']} Past history: {pa.get('Past_Medical_History', 'none')}"


def rich_scenario(osce: dict) -> str:
    """A multi-line vignette with bulleted symptoms and vital signs: lists that are NOT questions."""
    pa, exam = osce["Patient_Actor"], osce.get("Physical_Examination_Findings", {})
    symptoms = [pa["Symptoms"]["Primary_Symptom"], *pa["Symptoms"].get("Secondary_Symptoms", [])]
    vitals = exam.get("Vital_Signs", {})
    lines = [f"{pa['Demographics']}. {pa['History']}", "Symptoms:", *(f"- {s}" for s in symptoms)]
    if vitals:
        lines += ["Vital signs:", *(f"* {k.replace('_', ' ')}: {v}" for k, v in vitals.items())]
    return "\n".join(lines)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_on_real_vignettes(fmt):
    for osce in agentclinic_cases():
        for scenario in (flat_scenario(osce), rich_scenario(osce)):
            items = "\n".join(FORMATS[fmt](i, q) for i, q in enumerate(QS, 1))
            for prompt in (f"{scenario}\n\nQuestions:\n{items}", f"{scenario}\n\n{items}"):
                parsed = parse_prompt(prompt)
                assert parsed.questions == QS, (fmt, prompt)
                assert parsed.scenario == scenario, (fmt, prompt)


def test_inline_questions_after_real_vignettes():
    for osce in agentclinic_cases():
        scenario = flat_scenario(osce)
        parsed = parse_prompt(f"{scenario} {QS[0]} {QS[2]}")
        assert parsed.style == "inline"
        assert parsed.questions == [QS[0], QS[2]]  # "2.5 mg/kg" and "e.g." do not end a sentence
        assert parsed.scenario == scenario


def test_real_objectives_with_no_question_are_scenario_only():
    for osce in agentclinic_cases(10):
        text = osce["Objective_for_Doctor"]
        parsed = parse_prompt(text)
        assert parsed.questions == [] and parsed.scenario == text.strip() and parsed.style == "none"
        assert parsed.units() == ("", [text.strip()])  # answered as one question


def test_lists_in_the_scenario_are_not_questions():
    p = parse_prompt("Findings:\n- fever\n- cough\n\n- What is the diagnosis?\n- What next?")
    assert p.scenario == "Findings:\n- fever\n- cough" and p.questions == ["What is the diagnosis?", "What next?"]
    p = parse_prompt("History:\n1. fever\n2. cough\n1. What is the diagnosis?\n2. What next?")
    assert p.scenario == "History:\n1. fever\n2. cough" and p.questions == ["What is the diagnosis?", "What next?"]
    p = parse_prompt("A man, 40.\nQuestions:\n1. Diagnosis?\n\n2. Treatment?\nAnswer briefly.")
    assert p.questions == ["Diagnosis?", "Treatment?"] and p.scenario == "A man, 40.\nAnswer briefly."
    p = parse_prompt("A woman with a rash.\n1. Name the most likely cause.\n2. Give the first-line treatment.")
    assert p.questions == ["Name the most likely cause.", "Give the first-line treatment."]


def test_wrapped_questions_join_and_text_is_kept_exactly():
    p = parse_prompt("A man has fever.\r\n1. What is the cause\r\n   of the fever?\r\n2.   What  next?  ")
    assert p.questions == ["What is the cause of the fever?", "What  next?"]
    assert parse_prompt("He asked Dr. Smith. Is it viral? Should he rest?").questions == \
        ["Is it viral?", "Should he rest?"]


def test_empty_prompt_is_a_value_error():
    for bad in ("", "   ", "\n\t\n"):
        with pytest.raises(ValueError, match="empty prompt"):
            parse_prompt(bad)
    with pytest.raises(EmptyPromptError):
        parse_prompt(None)  # type: ignore[arg-type]
    assert issubclass(EmptyPromptError, UserError)  # the CLI reports it in one line, exit 2


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=400))
def test_parser_never_raises_on_arbitrary_text(text):
    if not text.strip():
        with pytest.raises(ValueError):
            parse_prompt(text)
        return
    parsed = parse_prompt(text)
    assert isinstance(parsed.scenario, str)
    assert all(isinstance(q, str) and q.strip() == q and q for q in parsed.questions)
    assert parsed.questions or parsed.scenario  # nothing is lost into the void


_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,;'()/%", min_size=1,
                max_size=10)
_sentence = st.lists(_word, min_size=2, max_size=8).map(lambda ws: " ".join(ws))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_sentence, min_size=1, max_size=4), st.lists(_sentence, min_size=1, max_size=6),
       st.sampled_from(sorted(FORMATS)), st.booleans())
def test_round_trip_of_generated_prompts(scenario_sentences, question_bodies, fmt, header):
    scenario = "The patient is unwell. " + " ".join(s + "." for s in scenario_sentences)
    questions = [f"What about {b}?" for b in question_bodies][: len(LETTERS)]
    items = "\n".join(FORMATS[fmt](i, q) for i, q in enumerate(questions, 1))
    parsed = parse_prompt(f"{scenario}\n{'Questions:' if header else ''}\n{items}\n")
    assert parsed.questions == questions
    assert parsed.scenario == scenario


# ---------------------------------------------------------------------------------------- nested numbering
NESTED = [  # (prompt after the scenario line, questions): sub-items belong to their parent question
    ("1. Diagnosis?\n1.1. Differential?\n1.2. Confirming test?\n2. Treatment?",
     ["Diagnosis? 1.1. Differential? 1.2. Confirming test?", "Treatment?"]),
    ("1. Diagnosis?\n a) cause? b) other?\n2. Treatment?", ["Diagnosis? a) cause? b) other?", "Treatment?"]),
    ("1. Diagnosis?\na) What is the cause?\nb) What else?\n2. Treatment?",
     ["Diagnosis? a) What is the cause? b) What else?", "Treatment?"]),
    ("1. Diagnosis:\n   a) most likely?\n   b) differentials?\n2. Management:\n   a) first line?",
     ["Diagnosis: a) most likely? b) differentials?", "Management: a) first line?"]),
    ("1. Diagnosis?\n   1. Most likely?\n   2. Differentials?\n2. Treatment?",
     ["Diagnosis? 1. Most likely? 2. Differentials?", "Treatment?"]),
    ("Q1: What are the risks?\n   - for the mother?\n   - for the baby?\nQ2: What next?",
     ["What are the risks? - for the mother? - for the baby?", "What next?"]),
    ("a) Diagnosis?\n   i) likely?\nb) Treatment?\nc) Follow-up?",
     ["Diagnosis? i) likely?", "Treatment?", "Follow-up?"]),
    ("1. Diagnosis? a) What cause? b) What else? 2. Treatment?", ["Diagnosis? a) What cause? b) What else?",
                                                                  "Treatment?"]),
    ("1. Which symptoms matter?\n- fever\n- cough\n2. What next?", ["Which symptoms matter? - fever - cough",
                                                                      "What next?"]),
    ("9999. Diagnosis?\n10000. Treatment?", ["Diagnosis?", "Treatment?"]),
    ("10000. Diagnosis?", ["Diagnosis?"]),
    ("123456. Diagnosis?\n123457. Treatment?", ["Diagnosis?", "Treatment?"]),
]


@pytest.mark.parametrize(("items", "questions"), NESTED, ids=range(len(NESTED)))
def test_nested_numbering_keeps_every_question_under_its_parent(items, questions):
    parsed = parse_prompt(f"{SCENARIOS[0]}\n{items}")
    assert parsed.questions == questions and parsed.scenario == SCENARIOS[0], parsed
    assert parse_prompt(f"{SCENARIOS[0]}\n\nQuestions:\n{items}\nAnswer briefly.").questions == questions


def test_a_list_in_the_scenario_does_not_take_the_questions_as_sub_items():
    p = parse_prompt("History:\n1. fever\n2. cough\na) What is the diagnosis?\nb) What next?")
    assert p.scenario == "History:\n1. fever\n2. cough" and p.questions == ["What is the diagnosis?", "What next?"]
    p = parse_prompt("History:\n1. fever\n2. cough\n1. What is the diagnosis?\n2. What next?")
    assert p.questions == ["What is the diagnosis?", "What next?"]
    p = parse_prompt("A man.\n1. What is it?\n   2. Which test?\n 3. How to treat?")
    assert p.questions == ["What is it?", "Which test?", "How to treat?"]  # ragged indents: one list
    assert parse_prompt("A man.\n- What is it?\n  - Which test?").questions == ["What is it?", "Which test?"]


# ------------------------------------------------------------------------------------ inline enumerations
INLINE_FORMATS = [f for f in FORMATS if f not in ("dash", "star", "bullet")]  # bullets cannot count
SCENARIOS = ["A 45-year-old man has had fever for 3 days (T 38.5 C) and a productive cough.",
             "History: type 2 diabetes, vitamin B12 1.5 mg daily, appendectomy at age 12. Exam: HR 1) 20 bpm."]


@pytest.mark.parametrize("fmt", INLINE_FORMATS)
@pytest.mark.parametrize("sep", [" ", "\n", ": "], ids=["same-line", "next-line", "colon"])
def test_inline_enumerations_split_into_questions(fmt, sep):
    """``a) ...? b) ...? c) ...?`` on one line is three questions, in every marker style the parser knows."""
    for scenario in SCENARIOS:
        items = " ".join(FORMATS[fmt](i, q) for i, q in enumerate(QS, 1))
        parsed = parse_prompt(f"{scenario.rstrip('.')}{sep}{items}" if sep == ": " else f"{scenario}{sep}{items}")
        assert parsed.questions == QS, (fmt, parsed)
        assert parsed.scenario == (f"{scenario.rstrip('.')}:" if sep == ": " else scenario), parsed
    # text after the last question stays with the scenario; an enumeration may also continue a list
    p = parse_prompt(f"{SCENARIOS[0]} {FORMATS[fmt](1, QS[0])} {FORMATS[fmt](2, QS[1])} Answer briefly.")
    assert p.questions == QS[:2] and p.scenario == f"{SCENARIOS[0]}\nAnswer briefly."
    p = parse_prompt(f"{SCENARIOS[0]}\n{FORMATS[fmt](1, QS[0])}\n{FORMATS[fmt](2, QS[1])} {FORMATS[fmt](3, QS[2])}")
    assert p.questions == QS[:3] and p.scenario == SCENARIOS[0]


@pytest.mark.parametrize("fmt", INLINE_FORMATS)
def test_inline_enumerations_after_real_vignettes(fmt):
    for osce in agentclinic_cases(10):
        scenario = flat_scenario(osce)
        parsed = parse_prompt(f"{scenario} " + " ".join(FORMATS[fmt](i, q) for i, q in enumerate(QS, 1)))
        assert parsed.questions == QS and parsed.scenario == scenario, (fmt, parsed)


PROSE = [  # (text, questions): markers inside ordinary prose are not an enumeration
    ("A man takes vitamin B12 1.5 mg daily and has type 2) diabetes. What next?", ["What next?"]),
    ("He had (1) fever, (2) cough and (3) rash. What is the diagnosis?", ["What is the diagnosis?"]),
    ("Grade 1) mild 2) moderate 3) severe. Which grade is it?", ["Which grade is it?"]),
    ("Hepatitis A. B. C. Which virus is it?", ["Which virus is it?"]),
    ("Options 2) rest? 3) surgery? He asks. What next?", ["Options 2) rest?", "3) surgery?", "What next?"]),
    ("Seen in 2019. 2. 3. What now?", ["What now?"]),
    ("Vitamin a) low, b) normal. Why?", ["Why?"]),
    ("Seen for Q1: fever Q2: cough. What is it?", ["What is it?"]),
    ("Type 1 (type A) is mild. Type 2 (type B) is severe and (type C) is late. What type is it?",
     ["What type is it?"]),  # MedQuAD's Cockayne syndrome answer: "is" opens a question only when capitalised
]


@pytest.mark.parametrize(("text", "questions"), PROSE, ids=range(len(PROSE)))
def test_markers_in_prose_are_not_split(text, questions):
    assert parse_prompt(text).questions == questions


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_sentence, min_size=1, max_size=3), st.lists(_sentence, min_size=2, max_size=6),
       st.sampled_from(INLINE_FORMATS), st.sampled_from([" ", "  ", "\n", " \t"]))
def test_round_trip_of_inline_enumerations(scenario_sentences, question_bodies, fmt, sep):
    scenario = "The patient is unwell. " + " ".join(s + "." for s in scenario_sentences)
    questions = [f"What about {b}?" for b in question_bodies][: len(LETTERS)]
    items = sep.join(FORMATS[fmt](i, q) for i, q in enumerate(questions, 1))
    parsed = parse_prompt(f"{scenario}{sep}{items}")
    assert parsed.questions == questions
    assert parsed.scenario == scenario


_TRICKY = ["fever", "cough", "1.5", "mg", "2)", "(1)", "(2)", "a)", "b)", "A.", "B.", "1.", "2.", "Q1:", "Q2:",
           "type", "B12", "grade", "3)", "(c)", "rash,", "pain;", "12", "dose"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_TRICKY), min_size=1, max_size=12), min_size=1, max_size=4))
def test_prose_with_markers_keeps_its_one_question(sentences):
    """Findings written with numbers, letters and markers never become questions of their own."""
    prose = "The patient: " + " ".join(" ".join(words) + " ok." for words in sentences)
    parsed = parse_prompt(f"{prose} What next?")
    assert parsed.questions == ["What next?"], parsed
    assert parsed.scenario == prose


def test_response_json_text_and_parse_back():
    r = Response("A man with fever.", [Answer("Cause?", "Influenza.", ["d1"]), Answer("Next?", "Rest.", [])])
    data = json.loads(r.to_json())
    assert data == {"summary": "A man with fever.",
                    "answers": [{"question": "Cause?", "answer": "Influenza.", "evidence": ["d1"]},
                                {"question": "Next?", "answer": "Rest.", "evidence": []}]}
    assert Response.from_dict(data) == r
    text = r.to_text()
    assert text == "Summary: A man with fever.\n1. Influenza.\n2. Rest."
    assert parse_response(text, ["Cause?", "Next?"]) == ("A man with fever.", ["Influenza.", "Rest."], True)


def test_whole_prompt_responses_are_salvaged_best_effort():
    qs = ["Cause?", "Next?"]
    assert parse_response("1. Influenza.", qs) == ("", ["Influenza.", ""], False)
    assert parse_response("**Summary:** Fever.\n\n**1.** Flu,\nlikely.\n2) Rest.", qs) == \
        ("Fever.", ["Flu, likely.", "Rest."], True)
    assert parse_response("A 2-day fever.\nAnswer 2: Rest.", qs) == ("A 2-day fever.", ["", "Rest."], False)
    assert parse_response("Fever in a man.\n\nIt is the flu.", ["Cause?"]) == \
        ("Fever in a man.", ["It is the flu."], False)
    assert parse_response("", qs) == ("", ["", ""], False)
