"""Each strategy's retrieval path with a tiny model, one batched generate call per stage, budgets, training
examples formatted like inference, and the ``answer`` / ``evaluate`` CLIs end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import qwenft  # noqa: F401 - ${demo:} resolver
import qwenft.clinical.stages as stages_mod
from qwenft.clinical.generate import MIN_SHARED_PREFIX, generate_batch, shared_prefix_length
from qwenft.clinical.parse import Parsed, parse_prompt
from qwenft.clinical.stages import answer
from qwenft.clinical.strategies import (
    HyDE,
    MultiQuery,
    StepBack,
    docs_per_query,
)
from qwenft.config import conf_dir
from qwenft.data.datamodule import DEMO_DIR
from qwenft.data.decompose import to_training_examples
from qwenft.errors import UserError
from qwenft.retrieval.fusion import interleave, rrf

RECORDS = [json.loads(line) for line in (DEMO_DIR / "test.jsonl").read_text().splitlines()]
REC = next(r for r in RECORDS if len(r["questions"]) >= 3)
PROMPT = REC["scenario"] + "\n" + "\n".join(f"{i}. {q}" for i, q in enumerate(REC["questions"], 1))
NAMES = ["whole_prompt", "decomposition", "multi_query", "rag_fusion", "step_back", "hyde"]
GEN = {"max_new_tokens": 3, "bf16": False}


def load(name: str):
    strategy = instantiate(OmegaConf.load(conf_dir() / "strategy" / f"{name}.yaml"))
    # short rewrites keep the test fast; everything else exactly as configured
    return dataclasses.replace(strategy, rewrite_max_new_tokens=8) if strategy.rewrite_prompt else strategy


@pytest.mark.parametrize("name", NAMES)
def test_strategy_retrieval_path(loaded, kb, name, monkeypatch):
    shapes, searched = [], []
    original_generate = loaded.model.generate
    monkeypatch.setattr(loaded.model, "generate",
                        lambda **kw: shapes.append(tuple(kw["input_ids"].shape)) or original_generate(**kw))
    real_search = kb.search
    monkeypatch.setattr(kb, "search", lambda q, k: searched.append((q, k)) or real_search(q, k))
    strategy = load(name)
    parsed = parse_prompt(PROMPT)
    n = len(parsed.questions)
    resp, trace = answer(parsed, strategy, loaded.model, loaded.tokenizer, True, kb, k=2, gen=GEN)

    assert [a.question for a in resp.answers] == REC["questions"]
    assert [a.evidence for a in resp.answers] == trace["retrieved"]
    assert all(len(ids) <= 2 and set(ids) <= set(kb.kb.ids()) for ids in trace["retrieved"])
    rewriting = name not in ("whole_prompt", "decomposition")
    assert len(shapes) == trace["generate_calls"] == (2 if rewriting else 1)  # one batched call per stage
    assert shapes[-1][0] == (1 if name == "whole_prompt" else n + 1)  # the summary + every answer in ONE call
    if rewriting:
        assert shapes[0][0] == n and len(trace["rewrites"]) == n  # every question's rewrite in ONE call
        assert all(trace["rewrites"])  # this model writes something, so the rewrites are really used
    # exactly the recorded queries were searched, each for k documents
    if name == "whole_prompt":
        assert searched == [(trace["queries"][0][0], 2)]
        assert all(q in searched[0][0] for q in REC["questions"]) and REC["scenario"] in searched[0][0]
        assert trace["retrieved"] == [real_search(searched[0][0], 2)] * n
        return
    assert searched == [(q, 2) for qs in trace["queries"] for q in qs]
    for question, queries, rewrite, ids in zip(parsed.questions, trace["queries"], trace["rewrites"] or [None] * n,
                                               trace["retrieved"], strict=True):
        original = strategy.original_query(parsed.scenario, question)
        rankings = [real_search(q, 2) for q in queries]
        if name == "decomposition":
            assert queries == [original]
        elif name in ("multi_query", "rag_fusion"):
            assert queries[0] == original and queries[1:] == strategy.parse_rewrite(rewrite)[: len(queries) - 1]
            assert 2 <= len(queries) <= strategy.n_queries + 1
        elif name == "step_back":
            assert queries == [original, strategy.parse_rewrite(rewrite)[0]]
        elif name == "hyde":
            assert queries == [" ".join(rewrite.split())] and original not in queries
        expected = rrf(rankings, strategy.rrf_k)[:2] if name == "rag_fusion" else interleave(rankings)[:2]
        assert ids == expected


def test_rewrite_parsing_is_deterministic():
    mq = MultiQuery(n_queries=3)
    assert mq.parse_rewrite('1. dose of X\n2) "side effects of X"\n\n- dose of X\nQuery 4: extra\n') == \
        ["dose of X", "side effects of X", "extra"]
    assert StepBack().parse_rewrite("\n  - What treats liver disease?\nSecond line") == ["What treats liver disease?"]
    assert HyDE().parse_rewrite("A passage\n about  X.") == ["A passage about X."]
    # a blank rewrite falls back to the original query rather than searching for nothing
    assert HyDE().queries("scene", "q?", "  ") == ["q? scene"]


def test_no_retriever_skips_rewrites_and_uses_one_call(loaded, monkeypatch):
    calls = []
    real = stages_mod.generate_batch
    monkeypatch.setattr(stages_mod, "generate_batch", lambda *a, **kw: calls.append(a[2]) or real(*a, **kw))
    resp, trace = answer(parse_prompt(PROMPT), load("rag_fusion"), loaded.model, loaded.tokenizer, True, None,
                         k=2, gen=GEN)
    assert len(calls) == 1 and len(calls[0]) == len(REC["questions"]) + 1
    assert trace["rewrites"] == [] and all(a.evidence == [] for a in resp.answers)


def test_budgets_give_the_whole_prompt_k_or_k_times_n(loaded, kb):
    parsed = parse_prompt(PROMPT)
    n = len(parsed.questions)
    assert docs_per_query("per_question", 2, n, True) == 2 and docs_per_query("per_prompt", 2, n, True) == 2 * n
    assert docs_per_query("per_prompt", 2, n, False) == 2  # k for each of n questions = k x n per prompt
    with pytest.raises(UserError):
        docs_per_query("per_token", 2, n, True)
    _, whole = answer(parsed, load("whole_prompt"), loaded.model, loaded.tokenizer, True, kb, k=1, budget="per_prompt",
                      gen={"max_new_tokens": 1, "bf16": False})
    assert len(whole["retrieved"][0]) == n  # the demo KB has enough matching documents
    _, split = answer(parsed, load("decomposition"), loaded.model, loaded.tokenizer, True, kb, k=1,
                      budget="per_prompt", gen={"max_new_tokens": 1, "bf16": False})
    assert sum(map(len, split["retrieved"])) == n


def test_batched_generation_equals_one_at_a_time(loaded):
    prompts = ["Short.", "A much longer prompt that needs far more left padding than the first one does."]
    batched = generate_batch(loaded.model, loaded.tokenizer, prompts, True, max_new_tokens=5, bf16=False)
    single = [generate_batch(loaded.model, loaded.tokenizer, [p], True, max_new_tokens=5, bf16=False)[0]
              for p in prompts]
    assert batched == single and all(batched)
    for training in (True, False):  # generation runs in eval mode and gives the caller's mode back
        loaded.model.train(training)
        base = generate_batch(loaded.model, loaded.tokenizer, prompts, False, max_new_tokens=3, bf16=True)
        assert len(base) == 2 and loaded.model.training is training  # base template, bf16 autocast


def test_shared_scenario_is_prefilled_once_and_answers_are_unchanged(loaded):
    """Summary + question prompts of one vignette share chat header + scenario: that prefix is embedded once for
    the batch, and every row still generates exactly what it generates alone."""
    from qwenft.data.format import prompt_ids
    from qwenft.data.prompts import question_prompt, summary_prompt

    prompts = [summary_prompt(REC["scenario"]), *(question_prompt(REC["scenario"], q) for q in REC["questions"])]
    seqs = [prompt_ids(loaded.tokenizer, [{"role": "user", "content": p}], True) for p in prompts]
    shared = shared_prefix_length(seqs)
    assert shared >= MIN_SHARED_PREFIX and all(len(s) > shared for s in seqs)
    embedded: list[int] = []
    hook = loaded.model.get_input_embeddings().register_forward_hook(
        lambda _m, args, _out: embedded.append(args[0].numel()))
    try:
        batched = generate_batch(loaded.model, loaded.tokenizer, prompts, True, max_new_tokens=6, bf16=False)
        prefill_tokens = embedded[0] + embedded[1]  # the shared prefix, then every row's own tokens
        single = [generate_batch(loaded.model, loaded.tokenizer, [p], True, max_new_tokens=6, bf16=False)[0]
                  for p in prompts]
    finally:
        hook.remove()
    width = max(len(s) - shared for s in seqs)
    assert embedded[0] == shared and prefill_tokens == shared + len(seqs) * width < sum(map(len, seqs))
    assert batched == single and all(batched)


def test_shared_prefix_length_leaves_every_row_a_token():
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # identical prompts: the last token is still each row's
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert shared_prefix_length([[7], [7, 8]]) == 0
    assert shared_prefix_length([[1, 2], [3, 2]]) == 0


def test_training_examples_match_inference_prompts(loaded, monkeypatch):
    seen = []
    real = stages_mod.generate_batch
    monkeypatch.setattr(stages_mod, "generate_batch", lambda *a, **kw: seen.extend(a[2]) or real(*a, **kw))
    parsed = Parsed(REC["scenario"], REC["questions"])
    for name in ("whole_prompt", "decomposition"):
        seen.clear()
        answer(parsed, load(name), loaded.model, loaded.tokenizer, True, None, gen={"max_new_tokens": 1, "bf16": False})
        examples = to_training_examples(REC, name)
        assert [e["prompt"] for e in examples] == seen, name
    whole, split = to_training_examples(REC, "whole_prompt"), to_training_examples(REC, "hyde")
    assert whole[0]["completion"] == "\n".join(
        [f"Summary: {REC['summary']}", *(f"{i}. {a}" for i, a in enumerate(REC["answers"], 1))])
    assert [e["completion"] for e in split] == [REC["summary"], *REC["answers"]]
    kb_text = {json.loads(x)["id"]: json.loads(x)["text"] for x in (DEMO_DIR / "kb.jsonl").read_text().splitlines()}
    with_refs = to_training_examples(REC, "decomposition", passages=kb_text)
    gold = REC["gold_docs"][0][0]
    assert f"[{gold}] {kb_text[gold]}" in with_refs[1]["prompt"]
    with pytest.raises(ValueError, match="unknown decomposition strategy"):
        to_training_examples(REC, "telepathy")
    with pytest.raises(ValueError, match="pair up"):
        to_training_examples({**REC, "answers": REC["answers"][:1]}, "whole_prompt")


def _cli(*args: str, stdin: str | None = None, cwd, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "QWENFT_CACHE": str(cwd / "cache"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "qwenft.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def test_answer_cli_end_to_end(tmp_path):
    out = _cli("answer", "model=tiny", "retrieval=none", "output=json", "generation.max_new_tokens=3",
               stdin=PROMPT, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)  # nothing but the JSON on stdout
    assert [a["question"] for a in data["answers"]] == REC["questions"]
    assert set(data) == {"summary", "answers"} and all(a["evidence"] == [] for a in data["answers"])

    (tmp_path / "p.txt").write_text("A woman has a rash. What is the cause? What is the treatment?")
    out = _cli("answer", "model=tiny", "model.tie_word_embeddings=false", "strategy=hyde", "retrieval=bm25",
               "output=text", "k=1",
               f"prompt_file={tmp_path}/p.txt", "generation.max_new_tokens=2", "generation.bf16=false", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("Summary: ") and [ln[:3] for ln in lines[1:]] == ["1. ", "2. "]
    assert any((tmp_path / "cache" / "bm25").iterdir())  # the index was cached

    bad = _cli("answer", "model=tiny", "retrieval=none", f"prompt_file={tmp_path}/missing.txt", cwd=tmp_path)
    assert bad.returncode == 2 and "missing.txt: file not found" in bad.stderr and "Traceback" not in bad.stderr
    empty = _cli("answer", "model=tiny", "retrieval=none", stdin="  \n", cwd=tmp_path)
    assert empty.returncode == 2 and "empty prompt" in empty.stderr


def test_evaluate_writes_one_table_and_keeps_text_out_of_wandb(tmp_path, monkeypatch):
    from qwenft.commands.evaluate import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("evaluate", overrides=[
            "model=tiny", "n_prompts=2", "strategies=[whole_prompt,decomposition,rag_fusion]", "k=1",
            "generation.max_new_tokens=2", "generation.bf16=false", f"out={tmp_path}/run", "logger=wandb",
            f"retrieval.cache_dir={tmp_path}/bm25", "strategy=rag_fusion", "strategy.rewrite_max_new_tokens=2",
        ])
    result = run(cfg)
    rows = result["rows"]
    assert [(r["strategy"], r["budget"]) for r in rows] == [
        (s, b) for s in ("whole_prompt", "decomposition", "rag_fusion") for b in ("per_question", "per_prompt")]
    by = {(r["strategy"], r["budget"]): r for r in rows}
    assert by[("whole_prompt", "per_prompt")]["same_as"] is None  # the baseline really re-runs with k x n documents
    whole = by[("whole_prompt", "per_prompt")]["docs_per_prompt"]
    assert whole > by[("whole_prompt", "per_question")]["docs_per_prompt"]
    assert by[("decomposition", "per_prompt")]["same_as"] == "per_question"
    assert by[("rag_fusion", "per_question")]["generate_calls"] == 2.0
    table = (tmp_path / "run" / "table.md").read_text()
    means = table.split("\n\n")[0].splitlines()  # the table of means; paired differences follow
    assert len(means) == 2 + len(rows) and "| rag_fusion | per_prompt (= per_question) | 2 |" in table
    assert "Paired difference to decomposition" in table
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["rows"] == json.loads(json.dumps(rows))
    assert len((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()) == 2 * 4  # 4 runs x 2 prompts
    wandb_files = [f for f in (tmp_path / "run" / "wandb").rglob("*") if f.is_file()]
    assert wandb_files
    scenario = RECORDS[0]["scenario"][:40].encode()
    assert not any(scenario in f.read_bytes() for f in wandb_files)  # no clinical text without log_text=true


def test_prompt_sources_in_order(tmp_path, monkeypatch):
    import io

    from qwenft.clinical.answer import read_prompt

    (tmp_path / "p.txt").write_text("from a file", encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin"))
    assert read_prompt(OmegaConf.create({"prompt": "from argv", "prompt_file": None})) == "from argv"
    with pytest.raises(UserError, match="are both set"):  # one of them would be ignored (issue 25)
        read_prompt(OmegaConf.create({"prompt": "from argv", "prompt_file": str(tmp_path / "p.txt")}))
    assert read_prompt(OmegaConf.create({"prompt": None, "prompt_file": str(tmp_path / "p.txt")})) == "from a file"
    assert read_prompt(OmegaConf.create({"prompt": None, "prompt_file": None})) == "from stdin"
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match="bad.txt:1: not valid UTF-8"):
        read_prompt(OmegaConf.create({"prompt": None, "prompt_file": str(tmp_path / "bad.txt")}))


@pytest.mark.parametrize("what,content,expected", [
    ("data_path", '{"scenario": "A man has a cough.", "questions": ["Why?"], "summary": "s", "answers": ["a"]}\n'
                  '{"scenario": "A woman", "questions": \n', "bad.jsonl:2"),
    ("data_path", "", "bad.jsonl"),
    ("retrieval.kb_path", '{"id": "d1", "text": "ok"}\n{"id": "d2"}\n', "bad.jsonl:2"),
])
def test_evaluate_input_errors_name_file_and_line_before_the_model_loads(tmp_path, what, content, expected):
    (tmp_path / "bad.jsonl").write_text(content, encoding="utf-8")
    out = _cli("evaluate", "model=offline", "model.cache_dir=/nonexistent", f"{what}={tmp_path}/bad.jsonl",
               "n_prompts=1", f"out={tmp_path}/out", cwd=tmp_path)
    # model=offline with a missing cache would fail differently: the input error must come first
    assert out.returncode == 2, out.stderr[-2000:]
    assert expected in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
