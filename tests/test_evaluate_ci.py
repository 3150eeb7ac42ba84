"""``qwenft evaluate`` with intervals: tables with mean [CI] and n, paired differences, retrieval-only runs on real
MedQuAD, the pool_rerank strategy, resuming from the predictions cache, progress bars and config errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import qwenft  # noqa: F401 - ${demo:} resolver
from qwenft.clinical.evaluate import HEADERS, PredictionCache, evaluate, load_strategy, retrieve_only
from qwenft.clinical.parse import Parsed
from qwenft.clinical.pool_rerank import PoolRerank
from qwenft.clinical.stages import answer
from qwenft.config import compose
from qwenft.data.datamodule import DEMO_DIR
from qwenft.errors import UserError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MEDQUAD = DATA / "medquad.jsonl.gz"
RECORDS = [json.loads(line) for line in (DEMO_DIR / "test.jsonl").read_text().splitlines()]
GEN = {"max_new_tokens": 2, "bf16": False}


def _run(tmp_path: Path, *overrides: str) -> dict:
    from qwenft.commands.evaluate import run

    cfg = compose("evaluate", [f"out={tmp_path}/run", "progress=false",
                               f"paths.cache_dir={tmp_path}/cache", *overrides])
    return run(cfg)


@pytest.mark.parametrize("name", ["whole_prompt", "decomposition", "pool_rerank"])
@pytest.mark.parametrize("budget", ["per_question", "per_prompt"])
def test_retrieval_only_reads_the_documents_the_full_run_reads(loaded, kb, name, budget):
    strategy = load_strategy(name)
    for rec in RECORDS[:4]:
        parsed = Parsed(rec["scenario"], rec["questions"])
        alone = retrieve_only(parsed, strategy, kb, 2, budget)
        if name == "pool_rerank":
            _, full = strategy.answer_prompt(parsed, loaded.model, loaded.tokenizer, True, kb, 2, budget, GEN)
        else:
            _, full = answer(parsed, strategy, loaded.model, loaded.tokenizer, True, kb, 2, budget, GEN)
        assert alone["retrieved"] == full["retrieved"] and alone["queries"] == full["queries"]
        assert any(alone["retrieved"])


def test_pool_rerank_picks_each_questions_documents_from_the_whole_prompt_pool(loaded, kb):
    strategy = PoolRerank()
    rec = next(r for r in RECORDS if len(r["questions"]) >= 3)
    parsed = Parsed(rec["scenario"], rec["questions"])
    resp, trace = strategy.answer_prompt(parsed, loaded.model, loaded.tokenizer, True, kb, 2, "per_question", GEN)
    whole = " ".join([rec["scenario"], *rec["questions"]])
    assert trace["pool"] == kb.search(whole, 2 * len(rec["questions"]))
    assert trace["queries"][0][0] == whole and trace["generate_calls"] == 1
    for q, ids, a in zip(rec["questions"], trace["retrieved"], resp.answers, strict=True):
        assert len(ids) == 2 and set(ids) <= set(trace["pool"]) and a.evidence == ids
        own = {d: r for r, d in enumerate(kb.search(q, 1000))}  # the question alone ranks the pool
        ranks = [own.get(d, 10**6) for d in ids]
        assert ranks == sorted(ranks)  # the question's own order, within the pool
        assert all(own.get(d, 10**6) >= max(ranks) for d in set(trace["pool"]) - set(ids))
    rrf = PoolRerank(mode="rrf").retrieve(parsed, kb, 2)
    assert all(set(ids) <= set(rrf["pool"]) for ids in rrf["retrieved"])
    with pytest.raises(UserError, match="pool_rerank needs the whole prompt's pool"):
        answer(parsed, strategy, loaded.model, loaded.tokenizer, True, kb, 2, "per_question", GEN)
    # without a retriever (the training callback) there is no pool: it answers as decomposition does
    alone, _ = answer(parsed, strategy, loaded.model, loaded.tokenizer, True, None, 2, "per_question", GEN)
    plain, _ = answer(parsed, load_strategy("decomposition"), loaded.model, loaded.tokenizer, True, None, 2,
                      "per_question", GEN)
    assert alone == plain
    with pytest.raises(UserError, match="strategy.mode='best'"):
        PoolRerank(mode="best")


def test_evaluate_table_has_intervals_n_and_paired_differences(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = _run(tmp_path, "model=tiny", "model.tie_word_embeddings=false", "n_prompts=4",
                  "strategies=[whole_prompt,decomposition,pool_rerank]", "k=1", "generation.max_new_tokens=2",
                  "generation.bf16=false", "logger=wandb")
    rows, diffs = result["rows"], result["differences"]
    by = {(r["strategy"], r["budget"]): r for r in rows}
    dec = by[("decomposition", "per_question")]
    assert dec["n_prompts"] == 4 and dec["n"]["answer_f1"] == 4 and dec["n"]["diagnosis_match"] == 0
    lo, hi = dec["ci"]["recall_at_k"]
    assert lo <= dec["recall_at_k"] <= hi and math.isnan(dec["diagnosis_match"])
    assert {(d["strategy"], d["budget"]) for d in diffs} == {(s, b) for s in ("whole_prompt", "pool_rerank")
                                                             for b in ("per_question", "per_prompt")}
    preds = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    for d in diffs:  # the paired mean is the mean of per-prompt differences over the same prompts
        mine = [p["scores"]["recall_at_k"] for p in preds if p["strategy"] == d["strategy"]
                and p["budget"] == (d["budget"] if d["strategy"] == "whole_prompt" else "per_question")]
        ref = [p["scores"]["recall_at_k"] for p in preds if p["strategy"] == "decomposition"]
        assert d["recall_at_k"]["mean"] == pytest.approx(sum(mine) / 4 - sum(ref) / 4)
        assert d["recall_at_k"]["lo"] <= d["recall_at_k"]["mean"] <= d["recall_at_k"]["hi"]
    table = (tmp_path / "run" / "table.md").read_text()
    assert "| strategy | budget | n | summary R-L |" in table and "diagnosis" not in table  # empty columns dropped
    assert f"| decomposition | per_question | 4 | {dec['summary_rougeL']:.3f} [" in table
    assert "Paired difference to decomposition" in table and "| pool_rerank | per_prompt |" in table
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["rows"] == json.loads(json.dumps(rows)) and metrics["reference_strategy"] == "decomposition"
    assert metrics["eval_data"] == "demo" and metrics["bootstrap"]["n_resamples"] == 1000
    wandb_files = [f for f in (tmp_path / "run" / "wandb").rglob("*") if f.is_file()]
    assert wandb_files and not any(RECORDS[0]["scenario"][:40].encode() in f.read_bytes() for f in wandb_files)


def test_an_interrupted_evaluation_resumes_from_the_cache(tmp_path, loaded, kb):
    strategies = [load_strategy("whole_prompt"), load_strategy("decomposition")]
    cache_path = tmp_path / "predictions.cache.jsonl"
    ran: list[dict] = []
    first = evaluate(RECORDS[:3], strategies, loaded, kb, 1, ["per_question", "per_prompt"], GEN,
                     cache=PredictionCache(cache_path), settings="s", progress=False, on_prompt=ran.append)
    assert len(ran) == 3 * 3  # whole_prompt twice (both budgets), decomposition once
    lines = cache_path.read_text().splitlines()
    cache_path.write_text("\n".join(lines[:4]) + "\n" + lines[4][:50])  # killed while writing the 5th
    ran.clear()
    second = evaluate(RECORDS[:3], strategies, loaded, kb, 1, ["per_question", "per_prompt"], GEN,
                      cache=PredictionCache(cache_path), settings="s", progress=False, on_prompt=ran.append)
    assert len(ran) == 5 and second.resumed == 4
    for a, b in zip(first.rows, second.rows, strict=True):  # the same scores (greedy decoding), timings aside
        assert (a["answer_f1"], a["recall_at_k"], a["ci"]["answer_f1"]) == (b["answer_f1"], b["recall_at_k"],
                                                                             b["ci"]["answer_f1"])
    ran.clear()
    evaluate(RECORDS[:3], strategies, loaded, kb, 1, ["per_question"], GEN, cache=PredictionCache(cache_path),
             settings="other model", progress=False, on_prompt=ran.append)
    assert len(ran) == 6  # another config is another key: nothing reused
    entries = [line for line in cache_path.read_text().splitlines() if line.startswith("{")]
    assert len(entries) == 4 + 5 + 6 + 1  # appended, never rewritten (+1: the torn line, left as it was)


def test_progress_bar_counts_prompts(tmp_path, loaded, kb, capsys):
    evaluate(RECORDS[:2], [load_strategy("decomposition")], loaded, kb, 1, ["per_question"], GEN, progress=True)
    err = capsys.readouterr().err
    assert "decomposition per_question" in err and "2/2" in err and "prompt" in err


def test_retrieval_only_on_real_medquad_with_intervals(tmp_path):
    if not MEDQUAD.exists():
        pytest.skip(f"{MEDQUAD} not present")
    result = _run(tmp_path, "eval_data=medquad", f"eval_data.path={MEDQUAD}", "retrieval_only=true", "n_prompts=40",
                  "k=5", "strategies=[whole_prompt,decomposition,pool_rerank,hyde]")
    by = {(r["strategy"], r["budget"]): r for r in result["rows"]}
    assert {s for s, _ in by} == {"whole_prompt", "decomposition", "pool_rerank"}  # hyde needs the model
    whole_k, whole_kn = by[("whole_prompt", "per_question")], by[("whole_prompt", "per_prompt")]
    assert whole_kn["hit_at_k"] >= whole_k["hit_at_k"] and whole_kn["docs_per_prompt"] > whole_k["docs_per_prompt"]
    assert by[("decomposition", "per_prompt")]["same_as"] == "per_question"
    for r in by.values():
        assert r["n"]["hit_at_k"] == 40 and 0 < r["hit_at_k"] < 1 and r["generate_calls"] == 0
        assert r["ci"]["hit_at_k"][0] < r["hit_at_k"] < r["ci"]["hit_at_k"][1]
        assert "answer_f1" not in r  # retrieval only: no answer scores at all
    table = (tmp_path / "run" / "table.md").read_text()
    assert "hyde skipped" in table and "16407 pairs" in table and "| hit@k |" in table


def test_data_set_config_errors_are_one_line_naming_the_key(tmp_path):
    with pytest.raises(UserError, match=r"^eval_data.path is not set"):
        _run(tmp_path, "eval_data=medquad", "retrieval_only=true")
    if not (DATA / "agentclinic_medqa.jsonl").exists():
        return
    with pytest.raises(UserError, match=r"^eval_data.kb_path is not set: agentclinic has no knowledge base"):
        _run(tmp_path, "eval_data=agentclinic", f"eval_data.path={DATA / 'agentclinic_medqa.jsonl'}",
             "retrieval_only=true")
    with pytest.raises(UserError, match="retrieval_only=true needs a retriever"):
        _run(tmp_path, "eval_data=agentclinic", f"eval_data.path={DATA / 'agentclinic_medqa.jsonl'}",
             "retrieval=none", "retrieval_only=true")


def test_each_real_data_set_reports_its_own_metric(tmp_path):
    """AgentClinic -> diagnosis match, K-QA -> must-have coverage and contradiction, MIRAGE -> MC accuracy."""
    ac, kqa_file = DATA / "agentclinic_medqa.jsonl", DATA / "kqa_questions_w_answers.jsonl"
    if not (ac.exists() and kqa_file.exists()):
        pytest.skip("../shared/data not present")
    from test_eval_datasets import _mirage_from_agentclinic

    (tmp_path / "benchmark.json").write_text(json.dumps(_mirage_from_agentclinic()))
    common = ["model=tiny", "model.tie_word_embeddings=false", "retrieval=none", "n_prompts=2",
              "strategies=[decomposition]", "budgets=[per_question]", "generation.max_new_tokens=2",
              "generation.bf16=false"]
    cases = {"agentclinic": (["eval_data=agentclinic", f"eval_data.path={ac}"], {"diagnosis_match"}),
             "kqa": (["eval_data=kqa", f"eval_data.path={kqa_file}"], {"must_have_coverage", "contradiction"}),
             "mirage": (["eval_data=mirage", f"eval_data.path={tmp_path / 'benchmark.json'}"], {"mc_accuracy"})}
    for name, (data, metrics) in cases.items():
        (row,) = _run(tmp_path / name, *common, *data)["rows"]
        for m in metrics:
            assert row["n"][m] == 2 and 0.0 <= row[m] <= 1.0, (name, m)
        others = {"diagnosis_match", "must_have_coverage", "contradiction", "mc_accuracy"} - metrics
        assert all(row["n"][m] == 0 for m in others), name
        table = (tmp_path / name / "run" / "table.md").read_text()
        assert all(f"| {HEADERS[m]} |" in table.splitlines()[0] for m in metrics)
        assert math.isnan(row["summary_rougeL"]) == (name != "agentclinic")  # only AgentClinic has summaries


def test_cli_names_the_unset_data_path_in_one_line(tmp_path):
    from trainutil import qwenft as cli

    out = cli("evaluate", "eval_data=agentclinic", "model=offline", "model.cache_dir=/nonexistent",
                 f"out={tmp_path}/out", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "eval_data.path is not set" in out.stderr
    assert not (tmp_path / "out").exists()  # nothing written, no model loaded


# ---------------------------------------------------------------------------------------- gold_docs shapes


def _flat_gold(records: list[dict]) -> list[dict]:
    """The demo records with ``gold_docs`` as hand-written files often have it: one id per question."""
    return [{**r, "gold_docs": [g[0] for g in r["gold_docs"]]} for r in records]


def test_gold_docs_as_lists_or_one_id_per_question_score_the_same(tmp_path):
    """A flat list of ids scored each id's characters (recall = hit = MRR = 0); both shapes now score alike."""
    one_each = [{**r, "gold_docs": [g[:1] for g in r["gold_docs"]]} for r in RECORDS[:8]]
    lists, flat = tmp_path / "lists.jsonl", tmp_path / "flat.jsonl"
    lists.write_text("".join(json.dumps(r) + "\n" for r in one_each))
    flat.write_text("".join(json.dumps(r) + "\n" for r in _flat_gold(RECORDS[:8])))
    rows = {}
    for path in (lists, flat):
        result = _run(tmp_path / path.stem, f"data_path={path}", "retrieval_only=true", "k=2", "n_prompts=null",
                      "strategies=[whole_prompt,decomposition]", "bootstrap.n_resamples=50")
        rows[path.stem] = [{m: r[m] for m in ("recall_at_k", "hit_at_k", "mrr")} | {"n": r["n"]["hit_at_k"]}
                           for r in result["rows"]]
    assert rows["flat"] == rows["lists"]
    assert all(r["n"] == 8 and r["hit_at_k"] > 0 for r in rows["flat"]), rows


BAD_GOLD = [  # (gold_docs for a record of 2 questions, needle)
    (["d1"], "has 1 ids for 2 questions"),
    (["d1", "d2", "d3"], "has 3 ids for 2 questions"),
    ([["d1"]], "has 1 lists for 2 questions"),
    (["d1", ["d2"]], "mixes ids and lists of ids"),
    ([["d1"], [3.5]], "'gold_docs'[1][0] must be a document id"),
    ([None, "d2"], "'gold_docs'[0] must be a document id"),
    (["d1", ""], "'gold_docs'[1] must be a document id (a non-empty string), got an empty string"),
    ({"q1": "d1"}, "must be an array, got object"),
    ("d1", "must be an array, got string"),
]


@pytest.mark.parametrize(("gold", "needle"), BAD_GOLD, ids=[json.dumps(g) for g, _ in BAD_GOLD])
def test_gold_docs_of_another_shape_are_one_line_naming_file_and_line(gold, needle, tmp_path):
    from qwenft.errors import DataError

    good = {"scenario": "A man.", "questions": ["Cause?", "Next?"], "summary": "Man.", "answers": ["Flu.", "Rest."]}
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({**good, "gold_docs": [["d1"], ["d2"]]}) + "\n" +
                    json.dumps({**good, "gold_docs": gold}) + "\n")
    with pytest.raises(DataError) as err:
        _run(tmp_path, f"data_path={path}", "retrieval_only=true")
    msg = str(err.value)
    assert msg.startswith(f"{path}:2: ") and needle in msg and "\n" not in msg, msg
