"""The six ways to answer a multi-question clinical prompt (``conf/strategy/*.yaml``, one class each).

``whole_prompt`` (:class:`WholePrompt`) sends the whole prompt as one retrieval query and one generation, then parses the
response back into the structure. Every other strategy answers per question -- the deterministic split of
``parse.py``, no model needed -- and they differ only in what they retrieve with:

* ``decomposition``: the question itself (with the scenario, ``query_template``);
* ``multi_query``: the original plus N model-written paraphrases, union of their results;
* ``rag_fusion``: the same N+1 queries, fused by reciprocal rank fusion (``rrf_k``, default 60);
* ``step_back``: a more generic question written by the model, retrieved alongside the original;
* ``hyde``: a hypothetical reference passage written by the model, used as the query.

Per prompt there are at most two ``generate`` calls: all query rewrites of all questions in one batch, then the
summary and every answer in another. Without a retriever the rewrites would be unused, so they are skipped.

Fair comparison: strategies issue different numbers of queries, so documents are budgeted, not queries. Each
question gets ``k`` documents in its context whatever number of queries found them (``per_question``); the
whole-prompt baseline gets ``k`` too, or ``k x n`` for a prompt of n questions under ``per_prompt`` -- the same
total a per-question strategy reads over the prompt (k for each of its n questions). Likewise
``max_new_tokens`` is per text: the whole-prompt response, n answers and a summary, gets (n + 1) times as many.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar

from qwenft.clinical.engines import Engine
from qwenft.clinical.generate import GenerationSettings, generate_batch
from qwenft.clinical.output import Answer, Response, parse_response
from qwenft.clinical.parse import Parsed
from qwenft.data.prompts import format_context, question_prompt, summary_prompt, whole_prompt
from qwenft.errors import UserError
from qwenft.retrieval.fusion import interleave, rrf

BUDGETS = ("per_question", "per_prompt")
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}\s*[.):]|[-*•]|(?:query|question|paraphrase)\s*\d*\s*:)\s*", re.IGNORECASE)


@dataclass
class Strategy:
    """The base strategy is ``decomposition``; subclasses change how retrieval queries are written and fused.

    ``query_template`` builds the original query from ``{question}`` and ``{scenario}``; ``rewrite_prompt`` (in
    the YAML, with ``{question}``, ``{scenario}``, ``{n}``) asks the loaded model for rewritten queries.
    """

    name: str = "decomposition"
    query_template: str = "{question} {scenario}"
    rewrite_prompt: str = ""
    rewrite_max_new_tokens: int = 48
    n_queries: int = 1
    keep_original: bool = True
    rrf_k: int = 60

    whole_prompt: ClassVar[bool] = False

    def original_query(self, scenario: str, question: str) -> str:
        return " ".join(self.query_template.format(question=question, scenario=scenario).split())

    def rewrite_requests(self, scenario: str, questions: list[str]) -> list[str]:
        """One prompt per question for the model, or none when this strategy does not rewrite."""
        if not self.rewrite_prompt:
            return []
        return [self.rewrite_prompt.format(question=q, scenario=scenario, n=self.n_queries) for q in questions]

    def parse_rewrite(self, text: str) -> list[str]:
        text = " ".join(text.split())
        return [text] if text else []

    def queries(self, scenario: str, question: str, rewrite: str | None = None) -> list[str]:
        """The retrieval queries of one question (never empty: the original stands in for a blank rewrite)."""
        original = self.original_query(scenario, question)
        written = self.parse_rewrite(rewrite) if rewrite is not None else []
        chosen = ([original] if self.keep_original or not written else []) + written
        return list(dict.fromkeys(q for q in chosen if q.strip()))

    def fuse(self, rankings: list[list[str]], k: int) -> list[str]:
        """Several rankings -> the ``k`` documents the question reads: a rank-interleaved union by default."""
        return interleave(rankings)[:k]


@dataclass
class WholePrompt(Strategy):
    """``whole_prompt``: the whole prompt in, the whole response out, parsed into the structure as best it can."""

    name: str = "whole_prompt"
    whole_prompt: ClassVar[bool] = True


@dataclass
class Decomposition(Strategy):
    """``decomposition``: one sub-query per question, answered with the scenario as context."""


@dataclass
class MultiQuery(Strategy):
    """``multi_query``: the model writes ``n_queries`` paraphrases (one per line, one greedy generation)."""

    name: str = "multi_query"
    n_queries: int = 3

    def parse_rewrite(self, text: str) -> list[str]:
        lines = [_LIST_MARKER.sub("", line).strip().strip('"') for line in text.splitlines()]
        return list(dict.fromkeys(line for line in lines if line))[: self.n_queries]


@dataclass
class RagFusion(MultiQuery):
    """``rag_fusion``: multi-query's queries, fused by reciprocal rank fusion instead of a union."""

    name: str = "rag_fusion"

    def fuse(self, rankings: list[list[str]], k: int) -> list[str]:
        return rrf(rankings, self.rrf_k)[:k]


@dataclass
class StepBack(Strategy):
    """``step_back``: a more generic question (its first line), retrieved alongside the original."""

    name: str = "step_back"

    def parse_rewrite(self, text: str) -> list[str]:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        first = _LIST_MARKER.sub("", first).strip().strip('"')
        return [first] if first else []


@dataclass
class HyDE(Strategy):
    """``hyde``: a hypothetical passage written by the model is the query (alone unless ``keep_original``)."""

    name: str = "hyde"
    keep_original: bool = False
    rewrite_max_new_tokens: int = 64


def docs_per_query(budget: str, k: int, n_questions: int, whole_prompt: bool) -> int:
    """How many documents one retrieval unit (a question, or the whole prompt) may put in its context."""
    if budget not in BUDGETS:
        raise UserError(f"budget={budget!r}: use {' or '.join(BUDGETS)}")
    if k < 0:
        raise UserError(f"k={k}: the number of documents must be >= 0")
    return k * n_questions if budget == "per_prompt" and whole_prompt else k


def answer(parsed: Parsed, strategy: Strategy, model, tokenizer, instruct: bool, retriever=None, k: int = 3,
           budget: str = "per_question", gen: dict | None = None) -> tuple[Response, dict]:
    """Answer one parsed prompt; returns the response and a trace of what was asked and retrieved.

    ``model`` is a transformers model (batched ``generate``) or an :class:`~qwenft.clinical.engines.Engine`
    (``engine.model``: vLLM's, or the HF engine's own model). The trace holds ``queries`` and ``retrieved`` per
    question (for recall@k / MRR), the model's ``rewrites``, ``generate_calls`` and ``format_valid`` (whether a
    whole-prompt response had the expected shape).
    """
    settings = GenerationSettings.from_dict(gen)
    scenario, questions = parsed.units()
    n = len(questions)
    per_query = docs_per_query(budget, k, n, strategy.whole_prompt)
    trace: dict = {"strategy": strategy.name, "budget": budget, "retrieval": retriever is not None,
                   "docs_per_query": per_query, "queries": [],
                   "rewrites": [], "retrieved": [], "generate_calls": 0, "format_valid": True}

    def generate(prompts: list[str], max_new_tokens: int) -> list[str]:
        trace["generate_calls"] += 1
        step = dataclasses.replace(settings, max_new_tokens=max_new_tokens)
        if isinstance(model, Engine):
            return model.complete(prompts, step)
        return generate_batch(model, tokenizer, prompts, instruct, **vars(step))

    def search(queries: list[str]) -> list[str]:
        if retriever is None or per_query <= 0:
            return []
        return strategy.fuse([retriever.search(q, per_query) for q in queries], per_query)

    def context(ids: list[str]) -> str:
        return format_context([(i, retriever.passage(i)) for i in ids]) if ids else ""

    if strategy.whole_prompt:
        query = " ".join([scenario, *questions]).strip()
        ids = search([query])
        trace["queries"] = [[query]] * n
        # the one response holds n answers + a summary: the same token budget per text as the other strategies
        text = generate([whole_prompt(scenario, questions, context(ids))], settings.max_new_tokens * (n + 1))[0]
        summary, answers, trace["format_valid"] = parse_response(text, questions)
        trace["retrieved"] = [ids] * n
        return Response(summary, [Answer(q, a, list(ids)) for q, a in zip(questions, answers, strict=True)]), trace

    requests = strategy.rewrite_requests(scenario, questions) if retriever is not None and per_query > 0 else []
    rewrites = generate(requests, strategy.rewrite_max_new_tokens) if requests else [None] * n
    trace["rewrites"] = [r for r in rewrites if r is not None]
    trace["queries"] = [strategy.queries(scenario, q, r) for q, r in zip(questions, rewrites, strict=True)]
    trace["retrieved"] = [search(qs) for qs in trace["queries"]]
    prompts = [summary_prompt(scenario or questions[0])]
    prompts += [question_prompt(scenario, q, context(ids)) for q, ids in zip(questions, trace["retrieved"], strict=True)]
    outs = generate(prompts, settings.max_new_tokens)
    answers = [Answer(q, a, ids) for q, a, ids in zip(questions, outs[1:], trace["retrieved"], strict=True)]
    return Response(outs[0], answers), trace
