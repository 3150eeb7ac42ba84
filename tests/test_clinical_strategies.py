"""Each strategy's retrieval path with the tiny model; one batched generate call per stage; the answer CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import qwenft  # noqa: F401 - ${demo:} resolver
from qwenft.cli import conf_dir
from qwenft.data.datamodule import DEMO_DIR
from qwenft.decomposition.parse import parse_prompt
from qwenft.decomposition.strategies import answer
from qwenft.decomposition.training import to_training_examples
from qwenft.model.sources import tiny
from qwenft.retrieval.index import BM25

REC = json.loads((DEMO_DIR / "test.jsonl").read_text().splitlines()[0])
PROMPT = REC["scenario"] + "\n" + "\n".join(f"{i}. {q}" for i, q in enumerate(REC["questions"], 1))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny(), BM25(DEMO_DIR / "kb.jsonl", cache_dir=tmp_path_factory.mktemp("bm25"))


@pytest.mark.parametrize("name", ["none", "decomposition", "multi_query", "rag_fusion", "step_back", "hyde"])
def test_strategy_retrieves_and_answers_every_question(setup, name, monkeypatch):
    loaded, kb = setup
    calls = []
    original = loaded.model.generate
    monkeypatch.setattr(loaded.model, "generate", lambda **kw: calls.append(kw["input_ids"].shape) or original(**kw))
    searched = []
    monkeypatch.setattr(kb, "search", lambda q, k, s=kb.search: searched.append(q) or s(q, k))
    strategy = instantiate(OmegaConf.load(conf_dir() / "decomposition" / f"{name}.yaml"))
    parsed = parse_prompt(PROMPT)
    resp, trace = answer(parsed, strategy, loaded.model, loaded.tokenizer, True, kb, k=2,
                         gen={"max_new_tokens": 3, "bf16": False})
    n = len(parsed.questions)
    assert [a.question for a in resp.answers] == REC["questions"]
    assert len(calls) == trace["generate_calls"] == (1 if name in ("none", "decomposition") else 2)
    if name != "none":
        assert calls[-1][0] == n + 1  # summary + every question in ONE batched call
    rewrites = {"multi_query": 3 * n, "rag_fusion": 3 * n, "step_back": n, "hyde": n}.get(name, 0)
    if rewrites:
        assert calls[0][0] == rewrites  # every rewrite of the prompt in one batched call
    # the tiny random model may write empty rewrites, which are not searched
    first = 1 if name == "none" else n
    assert first <= len(searched) <= first + rewrites
    assert all(len(ids) <= 2 and set(ids) <= {d["id"] for d in kb.docs} for ids in trace["retrieved"])


def test_per_prompt_budget_gives_the_whole_prompt_k_times_n(setup):
    loaded, kb = setup
    strategy = instantiate(OmegaConf.load(conf_dir() / "decomposition" / "none.yaml"))
    parsed = parse_prompt(PROMPT)
    _, trace = answer(parsed, strategy, loaded.model, loaded.tokenizer, True, kb, k=1, budget="per_prompt",
                      gen={"max_new_tokens": 2, "bf16": False})
    assert len(trace["retrieved"][0]) == len(parsed.questions)


def test_training_examples_follow_the_strategy():
    whole = to_training_examples(REC, "none")
    split = to_training_examples(REC, "decomposition")
    assert len(whole) == 1 and len(split) == len(REC["questions"]) + 1
    assert all(q in whole[0]["prompt"] for q in REC["questions"])
    assert split[1]["completion"] == REC["answers"][0]


def test_answer_cli_reads_stdin_and_writes_json(tmp_path):
    out = subprocess.run([sys.executable, "-m", "qwenft.cli", "answer", "model=tiny", "retrieval=none", "output=json",
                          "generation.max_new_tokens=3"], input=PROMPT, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)  # nothing but the JSON on stdout
    assert [a["question"] for a in data["answers"]] == REC["questions"] and "summary" in data
    bad = subprocess.run([sys.executable, "-m", "qwenft.cli", "answer", "model=tiny", "retrieval=none",
                          f"prompt_file={tmp_path}/missing.txt"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "missing.txt: file not found" in bad.stderr
