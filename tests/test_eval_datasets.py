"""Real data sets -> clinical records: MedQuAD, AgentClinic, K-QA from ../shared/data, MIRAGE's format built from
real AgentClinic cases, MedRAG knowledge-base rows, and the config keys' error lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from qwenft.clinical.datasets import agentclinic, kqa, medquad, mirage
from qwenft.errors import DataError, UserError
from qwenft.metrics.diagnosis import diagnosis_match
from qwenft.retrieval.bm25 import BM25Retriever
from qwenft.retrieval.kb import load_kb

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MEDQUAD = DATA / "medquad.jsonl.gz"
AGENTCLINIC = DATA / "agentclinic_medqa.jsonl"
KQA = DATA / "kqa_questions_w_answers.jsonl"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not present")


@pytest.fixture(scope="module")
def mq(tmp_path_factory):
    _need(MEDQUAD)
    cache = tmp_path_factory.mktemp("eval_data")
    return medquad.load(str(MEDQUAD), cache_dir=str(cache)), cache


def test_medquad_prompts_share_a_focus_and_point_at_their_answers(mq):
    data, _ = mq
    pairs = {json.loads(line)["question"]: json.loads(line) for line in gzip.open(MEDQUAD, "rt")}
    kb = load_kb(data.kb_path)
    assert len(kb) == 16407  # every answer is a document, MedQuAD's repeated ids included
    assert len(data.records) > 1000 and data.kb_path and not data.needs_kb
    for rec in data.records[:300]:
        assert 2 <= len(rec["questions"]) <= 4 and len(set(rec["questions"])) == len(rec["questions"])
        assert rec["scenario"] == f"A patient asks about {rec['focus']}." == rec["summary"]
        for q, a, gold in zip(rec["questions"], rec["answers"], rec["gold_docs"], strict=True):
            assert rec["focus"].lower() in q.lower() or pairs.get(q) is None or pairs[q]["focus"] == rec["focus"]
            assert gold and all(" ".join(kb.doc(g)["text"].split()) == " ".join(a.split()) for g in gold)
            assert any(kb.doc(g)["title"] == rec["focus"] for g in gold)  # copies may sit under other foci


def test_medquad_is_reproducible_by_seed_and_splits_by_focus(mq, tmp_path):
    data, cache = mq
    again = medquad.load(str(MEDQUAD), cache_dir=str(cache))
    assert again.records == data.records and again.kb_path == data.kb_path
    other = medquad.load(str(MEDQUAD), cache_dir=str(cache), seed=1)
    assert [r["id"] for r in other.records[:20]] != [r["id"] for r in data.records[:20]]
    train = medquad.load(str(MEDQUAD), cache_dir=str(cache), split="train")
    test_foci = {r["focus"].lower() for r in data.records}
    assert not test_foci & {r["focus"].lower() for r in train.records}
    assert abs(len(train.records) - len(data.records)) < 0.1 * len(data.records)  # test_fraction 0.5
    # the order and the questions do not depend on the file order
    lines = gzip.open(MEDQUAD, "rt").read().splitlines()
    (tmp_path / "rev.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    rev = medquad.build(medquad.read_pairs(tmp_path / "rev.jsonl"))
    assert [r["questions"] for r in rev[:50]] == [r["questions"] for r in data.records[:50]]


def test_medquad_bad_input_names_the_key_or_the_line(tmp_path):
    _need(MEDQUAD)
    with pytest.raises(UserError, match=r"^eval_data.path is not set"):
        medquad.load(None)
    rows = gzip.open(MEDQUAD, "rt").read().splitlines()[:3]
    bad = tmp_path / "mq.jsonl"
    bad.write_text(rows[0] + "\n" + rows[1] + "\n" + json.dumps({**json.loads(rows[2]), "answer": " "}) + "\n")
    with pytest.raises(DataError, match=r"mq.jsonl:3: field 'answer' must be a non-empty string"):
        medquad.load(str(bad))
    bad.write_text(rows[0] + "\n{oops\n")
    with pytest.raises(DataError, match=r"mq.jsonl:2: malformed JSON"):
        medquad.load(str(bad))
    with pytest.raises(UserError, match="split='dev'"):
        medquad.build(medquad.read_pairs(MEDQUAD), split="dev")


def test_agentclinic_cases_become_scenarios_with_a_scored_diagnosis():
    _need(AGENTCLINIC)
    data = agentclinic.load(str(AGENTCLINIC))
    cases = [json.loads(line)["OSCE_Examination"] for line in AGENTCLINIC.read_text().splitlines() if line.strip()]
    assert len(data.records) == len(cases) == 107 and data.needs_kb
    for rec, case in zip(data.records, cases, strict=True):
        dx = case["Correct_Diagnosis"]
        assert rec["questions"][0] == "What is the most likely diagnosis?" and rec["answers"][0] == dx.strip()
        assert rec["targets"] == [{"kind": "diagnosis", "question": 0, "answer": dx.strip(), "synonyms": []}]
        assert case["Patient_Actor"]["Demographics"] in rec["scenario"]
        assert rec["summary"].startswith(f"A {case['Patient_Actor']['Demographics']} presenting with")
        if case["Test_Results"]:
            first_test = next(iter(case["Test_Results"])).replace("_", " ")
            assert len(rec["questions"]) == 2 and rec["answers"][1].startswith(first_test)
        else:
            assert len(rec["questions"]) == 1 and "Test results:" not in rec["scenario"]
    # test results name the diagnosis in 16 cases: withheld, only one (an examination sign) still does
    assert sum(diagnosis_match(r["scenario"], r["answers"][0]) for r in data.records) == 1
    with_tests = agentclinic.load(str(AGENTCLINIC), questions=["diagnosis"])
    assert sum("Test results:" in r["scenario"] for r in with_tests.records) == 105  # 2 cases have none
    assert sum(diagnosis_match(r["scenario"], r["answers"][0]) for r in with_tests.records) == 1 + 16


def test_agentclinic_synonyms_and_errors(tmp_path):
    _need(AGENTCLINIC)
    (tmp_path / "syn.json").write_text(json.dumps({"myasthenia gravis": ["MG"]}))
    data = agentclinic.load(str(AGENTCLINIC), synonyms_path=str(tmp_path / "syn.json"))
    assert data.records[0]["targets"][0]["synonyms"] == ["MG"]
    lines = AGENTCLINIC.read_text().splitlines()
    (tmp_path / "ac.jsonl").write_text(lines[0] + "\n" + json.dumps({"OSCE_Examination": {"Patient_Actor": {}}}) + "\n")
    with pytest.raises(DataError, match=r"ac.jsonl:2: OSCE_Examination.Correct_Diagnosis"):
        agentclinic.load(str(tmp_path / "ac.jsonl"))
    with pytest.raises(UserError, match="choose from diagnosis, tests"):
        agentclinic.load(str(AGENTCLINIC), questions=["treatment"])


def test_kqa_messages_keep_the_physicians_statements():
    _need(KQA)
    data = kqa.load(str(KQA))
    rows = [json.loads(line) for line in KQA.read_text().splitlines() if line.strip()]
    assert len(data.records) == len(rows) == 201 and data.needs_kb
    for rec, row in zip(data.records, rows, strict=True):
        assert rec["summary"] == "" and set(rec["answers"]) == {row["Free_form_answer"].strip()}
        assert " ".join(rec["questions"]) in " ".join(row["Question"].split()) or rec["scenario"]
        assert rec["targets"][0]["must_have"] == [" ".join(s.split()) for s in row["Must_have"] if s.strip()]
    whole = kqa.load(str(KQA), split_questions=False)
    assert all(len(r["questions"]) == 1 and r["scenario"] == "" for r in whole.records)


def _mirage_from_agentclinic() -> dict:
    """MIRAGE's benchmark.json layout filled with real text: each AgentClinic case as a vignette, its diagnosis
    and three other cases' diagnoses as the options."""
    data = agentclinic.load(str(AGENTCLINIC), questions=["diagnosis"])
    dxs = sorted({r["answers"][0] for r in data.records})
    bench = {"medqa": {}}
    for i, rec in enumerate(data.records[:12]):
        wrong = [d for d in dxs if d != rec["answers"][0]][i : i + 3]
        letters = "ABCD"
        gold = letters[i % 4]
        opts = wrong[: i % 4] + [rec["answers"][0]] + wrong[i % 4:]
        bench["medqa"][f"{i:04d}"] = {"question": rec["scenario"] + " Which of the following is the most likely "
                                      "diagnosis?", "options": dict(zip(letters, opts, strict=True)), "answer": gold}
    return bench


def test_mirage_benchmark_json_and_jsonl_become_multiple_choice_records(tmp_path):
    _need(AGENTCLINIC)
    bench = _mirage_from_agentclinic()
    (tmp_path / "benchmark.json").write_text(json.dumps(bench))
    data = mirage.load(str(tmp_path / "benchmark.json"))
    assert len(data.records) == 12 and data.needs_kb
    rec, item = data.records[1], bench["medqa"]["0001"]
    assert rec["id"] == "medqa-0001" and rec["questions"][0].startswith("Which of the following is the most likely")
    assert rec["questions"][0].endswith("\n".join(f"{k}. {v}" for k, v in item["options"].items()))
    assert rec["scenario"] and rec["scenario"] in item["question"]  # the vignette, split off by the parser
    assert rec["targets"][0] == {"kind": "choice", "question": 0, "options": item["options"], "answer": "B"}
    assert rec["answers"] == [f"B. {item['options']['B']}"]
    with pytest.raises(UserError, match="mmlu not in"):
        mirage.load(str(tmp_path / "benchmark.json"), subsets=["mmlu"])
    lines = [json.dumps({"id": qid, **q}) for qid, q in bench["medqa"].items()]
    (tmp_path / "q.jsonl").write_text("\n".join(lines) + "\n")
    assert [r["questions"] for r in mirage.load(str(tmp_path / "q.jsonl")).records] == \
        [r["questions"] for r in data.records]
    (tmp_path / "bad.jsonl").write_text(lines[0] + "\n" + json.dumps({**json.loads(lines[1]), "answer": "E"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: question 0001: 'answer' must be one of"):
        mirage.load(str(tmp_path / "bad.jsonl"))


def test_medrag_rows_load_as_a_knowledge_base_and_are_searched(tmp_path):
    _need(MEDQUAD)
    rows = [json.loads(line) for line in gzip.open(MEDQUAD, "rt").read().splitlines()[:200]]
    # MedRAG's chunk format: id, title, content (and contents = title + content)
    medrag = [{"id": f"MedQuAD_{i}", "title": r["focus"], "content": r["answer"],
               "contents": f"{r['focus']}. {r['answer']}"} for i, r in enumerate(rows)]
    (tmp_path / "chunks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in medrag))
    kb = load_kb(tmp_path / "chunks.jsonl")
    assert len(kb) == 200 and kb.doc("MedQuAD_3")["text"] == rows[3]["answer"]
    assert kb.passage("MedQuAD_3") == f"{rows[3]['focus']}. {rows[3]['answer']}"
    bm25 = BM25Retriever(tmp_path / "chunks.jsonl", cache_dir=tmp_path / "bm25")
    hits = sum(f"MedQuAD_{i}" in bm25.search(r["question"], 5) for i, r in enumerate(rows))
    assert hits > 120  # the question finds its own answer among 200 most of the time
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "title": "t", "content": ""}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: each line needs a non-empty string 'content'"):
        load_kb(tmp_path / "bad.jsonl")
