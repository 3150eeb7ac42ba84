"""Query translations at two scopes (per question after decomposition, or once for the whole prompt) and two
answer layouts (per question, or one whole response): the prompt scope issues its rewrites once per prompt,
retrieves k x n, is scored and resumed by ``evaluate`` like every other strategy; ``answers=false`` batches the
rewrites of many prompts in one call; bad values fail in one line before a model loads."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
from omegaconf import OmegaConf

import qwenft  # noqa: F401 - ${demo:} resolver
from qwenft.clinical.engines import HFEngine
from qwenft.clinical.evaluate import (
    PredictionCache,
    evaluate,
    load_strategy,
    prediction_key,
    retrieve_only,
    strategy_config,
)
from qwenft.clinical.parse import Parsed
from qwenft.clinical.pool_rerank import PoolRerank
from qwenft.clinical.stages import answer
from qwenft.clinical.strategies import Decomposition, HyDE, MultiQuery, StepBack, WholePrompt
from qwenft.config import compose, conf_dir
from qwenft.data.datamodule import DEMO_DIR
from qwenft.errors import UserError
from qwenft.retrieval.fusion import interleave, rrf

RECORDS = [json.loads(line) for line in (DEMO_DIR / "test.jsonl").read_text().splitlines()]
REC = next(r for r in RECORDS if len(r["questions"]) >= 3)
GEN = {"max_new_tokens": 2, "bf16": False}
REWRITE_TOKENS = 4
PROMPT_SCOPE = [f"{t}_prompt{s}" for t in ("multi_query", "rag_fusion", "step_back", "hyde") for s in ("", "_rerank")]


class SpyEngine(HFEngine):
    """The HF engine, recording every batched call (its prompts and max_new_tokens); ``model`` is the engine
    itself, so the answering code goes through ``complete`` as it does with vLLM."""

    def __init__(self, loaded) -> None:  # noqa: ANN001
        super().__init__(loaded)
        self.calls: list[tuple[list[str], int]] = []

    @property
    def model(self):  # noqa: ANN201
        return self

    def complete(self, prompts, settings, counts=None):  # noqa: ANN001, ANN201
        self.calls.append((list(prompts), settings.max_new_tokens))
        return super().complete(prompts, settings, counts)


def short(name: str):
    """The shipped strategy, with short rewrites to keep the test fast."""
    strategy = load_strategy(name)
    return dataclasses.replace(strategy, rewrite_max_new_tokens=REWRITE_TOKENS) if strategy.writes_queries() \
        else strategy


@pytest.mark.parametrize("name", PROMPT_SCOPE)
def test_prompt_scope_rewrites_once_per_prompt_and_retrieves_k_times_n(loaded, kb, name, monkeypatch):
    spy = SpyEngine(loaded)
    searched: list[tuple[str, int]] = []
    real_search = kb.search
    monkeypatch.setattr(kb, "search", lambda q, k: searched.append((q, k)) or real_search(q, k))
    strategy = short(name)
    assert strategy.scope == "prompt" and strategy.layout == ("per_question" if name.endswith("_rerank") else "whole")
    parsed = Parsed(REC["scenario"], REC["questions"])
    n, k = len(REC["questions"]), 2
    resp, trace = answer(parsed, strategy, spy, loaded.tokenizer, True, kb, k=k, gen=GEN)

    # the rewrites: ONE request for the whole prompt (its scenario and every question), n times one question's tokens
    (rewrite_rows, rewrite_tokens), (answer_rows, answer_tokens) = spy.calls
    assert len(rewrite_rows) == 1 and rewrite_tokens == REWRITE_TOKENS * n
    assert REC["scenario"] in rewrite_rows[0] and all(q in rewrite_rows[0] for q in REC["questions"])
    assert trace["rewrites"] and len(trace["rewrites"]) == 1
    # the prompt's queries (the whole prompt, unless hyde, and what the model wrote), each for k x n documents
    queries = trace["queries"][0][: len(trace["queries"][0]) - (1 if strategy.layout == "per_question" else 0)]
    assert queries == strategy.prompt_queries(parsed.scenario, parsed.questions, trace["rewrites"][0])
    assert (" ".join([REC["scenario"], *REC["questions"]]) in queries) == strategy.keep_original
    assert searched[: len(queries)] == [(q, k * n) for q in queries]
    rankings = [real_search(q, k * n) for q in queries]
    fused = rrf(rankings, strategy.rrf_k) if "rag_fusion" in name else interleave(rankings)
    assert trace["pool"] == fused[: k * n]
    if strategy.keep_original:
        assert len(trace["pool"]) == k * n  # the whole prompt's budget
    assert trace["generate_calls"] == 2 and trace["prompt_tokens"] > 0 and trace["generated_tokens"] > 0
    if strategy.layout == "whole":  # one whole response, every question reading the pool
        assert len(answer_rows) == 1 and answer_tokens == GEN["max_new_tokens"] * (n + 1)
        assert trace["retrieved"] == [trace["pool"]] * n and all(a.evidence == trace["pool"] for a in resp.answers)
    else:  # a summary and an answer per question, each from the pool reranked for it (pool_rerank's code)
        assert len(answer_rows) == n + 1 and answer_tokens == GEN["max_new_tokens"]
        ranker = PoolRerank()
        for q, ids, a in zip(REC["questions"], trace["retrieved"], resp.answers, strict=True):
            assert ids == ranker.rerank(trace["pool"], real_search(q, 1000))[:k] and a.evidence == ids
    assert [a.question for a in resp.answers] == REC["questions"]


def test_decomposition_at_prompt_scope_retrieves_what_whole_prompt_and_pool_rerank_do(kb):
    """The untranslated prompt at prompt scope is the whole_prompt query at the per_prompt budget; reranked per
    question, it is pool_rerank -- under either budget (prompt scope always reads k x n)."""
    whole, rerank = Decomposition(scope="prompt", layout="whole"), Decomposition(scope="prompt")
    for rec in RECORDS[:4]:
        parsed = Parsed(rec["scenario"], rec["questions"])
        baseline = retrieve_only(parsed, WholePrompt(), kb, 2, "per_prompt")
        pooled = retrieve_only(parsed, PoolRerank(), kb, 2, "per_question")
        for budget in ("per_question", "per_prompt"):
            assert retrieve_only(parsed, whole, kb, 2, budget)["retrieved"] == baseline["retrieved"]
            assert retrieve_only(parsed, rerank, kb, 2, budget)["retrieved"] == pooled["retrieved"]


def test_question_scope_keeps_its_cache_keys_and_scopes_do_not_collide():
    """Keys of a fixed record, computed before scopes existed: question-scope caches still resume; prompt
    scope, and each layout, is a key of its own."""
    rec = {"scenario": "A man has a cough.", "questions": ["Why?", "What dose?"], "summary": "s", "answers": ["a", "b"]}
    before = {
        "whole_prompt": "7572283bf7b9025272f5a731c5afc058a4caa2d65cb51b89a4fc773680817249",
        "decomposition": "3e77a66b57f845966c222019cfd7d5273c64ef24b03b5f39c337adb532d815b6",
        "multi_query": "f7dc99858970ce37a97074bc36fd6ff4f88538d4b506c4778c1a11dc9c6626d6",
        "rag_fusion": "e4eea899e107b5633496f80098155a1eee4d4f1db3a5baa916c129ce53ab1fbd",
        "step_back": "f744f90fce1998f7c6d8e9a22ddb772d8ea39213c1414d79e10d30f109828988",
        "hyde": "1ac1a8410ada4648aa65564bc8aa93fcffe33bb2be001a061562948ec3778af0",
        "pool_rerank": "b2f87704692e2cdca70154269ef70cd0317206d405dd801712653cfad7a382ad",
    }
    for name, key in before.items():
        assert prediction_key(rec, load_strategy(name), "per_question", "S") == key, name
    step_back = load_strategy("step_back")
    keys = {prediction_key(rec, dataclasses.replace(step_back, scope=s, layout=lay), "per_question", "S")
            for s in ("question", "prompt") for lay in ("per_question", "whole")}
    assert len(keys) == 4
    # a named file and the same override give the same key (same settings, same name)
    named = load_strategy("step_back_prompt")
    assert prediction_key(rec, named, "per_question", "S") == prediction_key(
        rec, dataclasses.replace(step_back, name="step_back_prompt", scope="prompt", layout="whole"),
        "per_question", "S")


def test_named_strategy_files_compose_as_hydra_composes_them():
    """``strategies=[...]`` reads conf/strategy/*.yaml itself: a combination file's defaults list must give
    exactly what ``strategy=<name>`` gives through Hydra."""
    for path in sorted((conf_dir() / "strategy").glob("*.yaml")):
        hydra = OmegaConf.to_container(compose("evaluate", [f"strategy={path.stem}"]).strategy)
        assert hydra == OmegaConf.to_container(strategy_config(path.stem)), path.stem
        assert load_strategy(path.stem).name == path.stem


def test_evaluate_scores_prompt_scope_like_the_others_and_resumes(tmp_path, loaded, kb):
    spy = SpyEngine(loaded)
    names = ["decomposition", "step_back_prompt", "rag_fusion_prompt_rerank", "step_back"]
    strategies = [short(n) for n in names]
    records = RECORDS[:3]
    cache = tmp_path / "predictions.cache.jsonl"
    ran: list[dict] = []
    first = evaluate(records, strategies, spy, kb, 1, ["per_question", "per_prompt"], GEN,
                     cache=PredictionCache(cache), settings="s", progress=False, on_prompt=ran.append,
                     n_resamples=200)
    assert len(ran) == len(names) * len(records)  # every strategy once: the same documents under both budgets
    # one call per stage: the prompt scope's rewrites are ONE row per prompt, the question scope's one per question
    expected = {"decomposition": lambda n: [(n + 1, 2)],
                "step_back_prompt": lambda n: [(1, REWRITE_TOKENS * n), (1, 2 * (n + 1))],
                "rag_fusion_prompt_rerank": lambda n: [(1, REWRITE_TOKENS * n), (n + 1, 2)],
                "step_back": lambda n: [(n, REWRITE_TOKENS), (n + 1, 2)]}
    assert [(len(rows), tokens) for rows, tokens in spy.calls] == [
        call for name in names for rec in records for call in expected[name](len(rec["questions"]))]
    by = {(r["strategy"], r["budget"]): r for r in first.rows}
    for name in names:
        row = by[(name, "per_question")]
        assert by[(name, "per_prompt")]["same_as"] == "per_question"
        assert row["n"]["answer_f1"] == 3 and row["n"]["hit_at_k"] == 3 and row["n"]["pool_hit"] == 3
        assert row["prompt_tokens"] > 0 and row["generated_tokens"] > 0 and row["sec_per_prompt"] > 0
        assert row["generate_calls"] == (1.0 if name == "decomposition" else 2.0)
    n_docs = [len(r["questions"]) for r in records]
    assert by[("step_back_prompt", "per_question")]["docs_per_prompt"] == pytest.approx(sum(n_docs) / 3)
    # the prompt scope's rewrite calls: one row per prompt; the question scope's: one row per question
    diffs = {(d["strategy"], d["budget"]) for d in first.differences}
    assert {(n, b) for n in names[1:] for b in ("per_question", "per_prompt")} == diffs
    assert all(not math.isnan(d["pool_hit"]["mean"]) for d in first.differences)

    # resumed: nothing runs again, the same numbers come back
    ran.clear()
    calls = len(spy.calls)
    second = evaluate(records, strategies, spy, kb, 1, ["per_question", "per_prompt"], GEN,
                      cache=PredictionCache(cache), settings="s", progress=False, on_prompt=ran.append,
                      n_resamples=200)
    assert ran == [] and len(spy.calls) == calls and second.resumed == len(names) * len(records)
    for a, b in zip(first.rows, second.rows, strict=True):
        assert (a["strategy"], a["answer_f1"], a["pool_mrr"], a["prompt_tokens"]) == \
            (b["strategy"], b["answer_f1"], b["pool_mrr"], b["prompt_tokens"])


def test_retrieval_without_answers_batches_the_rewrites_of_many_prompts(loaded, kb):
    spy = SpyEngine(loaded)
    records = [r for r in RECORDS if len(r["questions"]) == len(REC["questions"])][:3]
    assert len(records) == 3
    strategies = [short("decomposition"), short("rag_fusion"), short("step_back_prompt_rerank")]
    result = evaluate(records, strategies, spy, kb, 2, ["per_question"], GEN, progress=False, answers=False,
                      rewrite_batch=3, n_resamples=200)
    n = len(REC["questions"])
    # one call per strategy that writes queries, holding the rewrites of all three prompts; no answers at all
    assert [(len(rows), tokens) for rows, tokens in spy.calls] == [(3 * n, REWRITE_TOKENS), (3, REWRITE_TOKENS * n)]
    for row in result.rows:
        assert "answer_f1" not in row and row["n"]["hit_at_k"] == 3 and not math.isnan(row["pool_hit"])
    by = {r["strategy"]: r for r in result.rows}
    assert by["decomposition"]["generate_calls"] == 0 and by["rag_fusion"]["generate_calls"] == 1.0
    assert by["step_back_prompt_rerank"]["docs_per_prompt"] == 2 * n
    # the documents are those the full answer retrieves (the same rewrites, batched or not)
    for strategy in strategies[1:]:
        for rec, pred in zip(records, [p for p in result.predictions if p["strategy"] == strategy.name], strict=True):
            _, full = answer(Parsed(rec["scenario"], rec["questions"]), strategy, loaded.model, loaded.tokenizer,
                             True, kb, 2, gen=GEN)
            assert pred["queries"] == full["queries"] and pred["rewrites"] == full["rewrites"]
            assert [a["evidence"] for a in pred["response"]["answers"]] == full["retrieved"]
    with pytest.raises(UserError, match="rewrite_batch=0: must be >= 1"):
        evaluate(records, strategies, spy, kb, 2, ["per_question"], GEN, progress=False, answers=False,
                 rewrite_batch=0)
    with pytest.raises(UserError, match="answers=false: strategies that write their queries need the model"):
        evaluate(records, strategies, None, kb, 2, ["per_question"], GEN, progress=False, answers=False)


@pytest.mark.parametrize("make,message", [
    (lambda: StepBack(scope="sideways"), "strategy.scope='sideways': must be one of: question, prompt"),
    (lambda: MultiQuery(layout="both"), "strategy.layout='both': must be one of: per_question, whole"),
    (lambda: HyDE(scope="prompt", rerank_mode="best"), "strategy.rerank_mode='best': must be one of: question, rrf"),
    (lambda: Decomposition(scope="prompt", rerank_depth=0),
     "strategy.rerank_depth=0: must be an integer in [1, 1 000 000 000]"),
    (lambda: StepBack(rewrite_prompt="{question}", scope="prompt"), "has no prompt_rewrite_prompt"),
    (lambda: WholePrompt(scope="prompt"), "whole_prompt is already one query and one response"),
    (lambda: PoolRerank(layout="whole"), "pool_rerank is already the whole prompt's pool"),
    (lambda: load_strategy("telepathy_prompt"), "unknown strategy 'telepathy_prompt'"),
])
def test_bad_scope_and_layout_values_are_one_clear_error(make, message):
    with pytest.raises(UserError, match=re.escape(message)):
        make()


def test_cli_refuses_a_bad_scope_in_one_line_before_the_model_loads(tmp_path):
    from trainutil import qwenft as cli

    out = cli("evaluate", "model=offline", "model.cache_dir=/nonexistent", "strategies=[decomposition]",
              "strategy=step_back", "strategy.scope=sideways", f"out={tmp_path}/out", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert "strategy.scope='sideways': must be one of: question, prompt" in out.stderr
    assert not (tmp_path / "out").exists()
    out = cli("evaluate", "model=offline", "model.cache_dir=/nonexistent", "strategies=[step_back_prompt]",
              "answers=false", "retrieval=none", f"out={tmp_path}/out", cwd=tmp_path)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
    assert "answers=false scores retrieval alone: it needs a retriever" in out.stderr
    assert not (tmp_path / "out").exists()


def test_whole_layout_needs_room_for_the_whole_response(monkeypatch):
    """``qwenft answer`` sizes the context check by the layout: a whole response holds n + 1 texts."""
    import qwenft.clinical.answer as answer_mod
    import qwenft.clinical.evaluate as evaluate_mod

    monkeypatch.setattr(evaluate_mod, "answer_prompt", lambda *a, **kw: pytest.fail("the check should have refused"))
    cfg = compose("answer", ["model=tiny", "retrieval=none", "strategy=step_back_prompt",
                             "generation.max_new_tokens=2000", "generation.engine=hf", "generation.bf16=false"])
    with pytest.raises(UserError, match="needs about .* tokens"):  # 4 x 2000 > the tiny model's 4096
        answer_mod.respond(cfg, Parsed(REC["scenario"], REC["questions"]))


def test_engines_count_prompt_and_generated_tokens_per_row(loaded):
    """The costs of a prediction: prompt tokens are the ids sent (chat template included), generated tokens the
    ids decoded for a row up to its end marker -- from HF's batch and from vLLM's completions alike."""
    import httpx
    import torch

    from qwenft.clinical.engines.vllm import VllmEngine
    from qwenft.clinical.generate import generate_batch, generated_lengths
    from qwenft.clinical.generation_settings import GenerationSettings
    from qwenft.data.format import prompt_ids

    prompts = ["Short.", "A much longer prompt than the first one, to be left padded."]
    counts: list = []
    generate_batch(loaded.model, loaded.tokenizer, prompts, True, max_new_tokens=3, bf16=False, counts=counts)
    sent = [len(prompt_ids(loaded.tokenizer, [{"role": "user", "content": p}], True)) for p in prompts]
    assert [c[0] for c in counts] == sent and all(1 <= c[1] <= 3 for c in counts)
    assert generated_lengths(torch.tensor([[5, 151645, 151643, 151643], [5, 6, 7, 8]]), [151645, 151643]) == [2, 4]

    def reply(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(200, json={"choices": [{"index": i, "token_ids": [11] * (i + 1)}
                                                     for i in range(len(body["prompt"]))]})

    engine = VllmEngine("http://vllm.test", loaded.tokenizer, True, "/nowhere")
    engine.client = httpx.Client(base_url="http://vllm.test", transport=httpx.MockTransport(reply))
    counts = []
    assert len(engine.complete(prompts, GenerationSettings(max_new_tokens=3, bf16=False), counts=counts)) == 2
    assert counts == [(sent[0], 1), (sent[1], 2)]


def test_pooled_scores_read_every_question_against_the_prompts_whole_pool():
    from qwenft.clinical.evaluate import pooled_scores

    record = {"gold_docs": [["a"], ["z", "c"], []]}  # the third question has no gold: not counted
    assert pooled_scores(record, {"pool": ["b", "c", "a"], "retrieved": [["b"], ["c"], ["a"]]}) == {
        "pool_hit": 1.0, "pool_mrr": (1 / 3 + 1 / 2) / 2}
    # no pool recorded (cached before scopes): the questions' documents interleaved by rank
    assert pooled_scores(record, {"retrieved": [["b", "a"], ["d"]]})["pool_mrr"] == pytest.approx((1 / 3 + 0) / 2)
    assert all(math.isnan(v) for v in pooled_scores(record, {"retrieval": False, "pool": ["a"]}).values())
    assert all(math.isnan(v) for v in pooled_scores({"gold_docs": []}, {"pool": ["a"]}).values())
