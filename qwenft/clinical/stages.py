"""One prompt answered in stages -- query rewrites, retrieval, generation -- so that each stage of MANY prompts
can go to the engine in one batched call.

``answer`` (below) runs the stages of one prompt (at most two ``generate`` calls: its rewrites, then its
summary and answers). ``qwenft evaluate answers=false`` runs the rewrite stage of a whole chunk of prompts in one
call (``rewrite_batch`` prompts): on a CPU a batch of rows decodes in little more time than one row, and vLLM
schedules the whole chunk at once.

What a prompt retrieves depends on the strategy's scope and layout (``strategies.py``'s docstring): per question
(``scope: question``), or once for the whole prompt into a pool of k x n documents (``scope: prompt``) that
every question reads whole (``layout: whole``) or reranked for it by ``pool_rerank``'s code
(``layout: per_question``).

Costs are counted per prompt: ``generate_calls`` (calls this prompt had rows in), ``prompt_tokens`` (the token
ids its rows sent, chat template included) and ``generated_tokens`` (the ids generated for its rows, each up to
and including its end marker), as the engine reports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from qwenft.clinical.engines.base import Engine
from qwenft.clinical.generate import generate_batch
from qwenft.clinical.generation_settings import GenerationSettings
from qwenft.clinical.output import Answer, Response, parse_response
from qwenft.clinical.parse import Parsed
from qwenft.clinical.strategies import Generate, Strategy, docs_per_query, rerank_pool, whole_query
from qwenft.data.prompts import format_context, question_prompt, summary_prompt, whole_prompt
from qwenft.retrieval.fusion import interleave


@dataclass
class Request:
    """One row of a batched generate call."""

    text: str
    max_new_tokens: int


class PromptRun:
    """One prompt of one strategy: ``rewrite_requests`` -> ``retrieve(rewrites)`` -> ``answer_requests`` ->
    ``finish(texts)``. ``trace`` is what ``answer`` returns beside the response."""

    def __init__(self, parsed: Parsed, strategy: Strategy, retriever, k: int, budget: str = "per_question",
                 max_new_tokens: int = 64) -> None:
        """``max_new_tokens``: per answer text (``generation.max_new_tokens``)."""
        self.strategy, self.retriever, self.k, self.max_new_tokens = strategy, retriever, k, max_new_tokens
        self.scenario, self.questions = parsed.units()
        n = len(self.questions)
        prompt_scope = strategy.scope == "prompt" and not strategy.whole_prompt
        # prompt scope retrieves the whole prompt's budget, k x n, whatever the budget (module docstring)
        self.per_query = k * n if prompt_scope else docs_per_query(budget, k, n, strategy.whole_prompt)
        if prompt_scope:
            docs_per_query(budget, k, n, False)  # the same checks of budget and k
        self.prompt_scope = prompt_scope
        self.searching = retriever is not None and self.per_query > 0
        self.trace: dict = {"strategy": strategy.name, "budget": budget, "retrieval": retriever is not None,
                            "scope": strategy.scope, "layout": "whole" if strategy.whole_answer else "per_question",
                            "docs_per_query": self.per_query, "queries": [], "rewrites": [], "retrieved": [],
                            "pool": [], "generate_calls": 0, "prompt_tokens": 0, "generated_tokens": 0,
                            "format_valid": True}

    # ------------------------------------------------------------------------------------------- rewrites

    def rewrite_requests(self) -> list[Request]:
        """What the model must write before retrieval: one request per question (question scope), one for the
        whole prompt (prompt scope, n times the tokens of one), or none (no rewrites, or nothing to search)."""
        s = self.strategy
        if not self.searching or s.whole_prompt:
            return []
        if self.prompt_scope:
            texts = s.prompt_rewrite_requests(self.scenario, self.questions)
            return [Request(t, s.rewrite_max_new_tokens * len(self.questions)) for t in texts]
        return [Request(t, s.rewrite_max_new_tokens) for t in s.rewrite_requests(self.scenario, self.questions)]

    # ------------------------------------------------------------------------------------------ retrieval

    def _search(self, queries: list[str]) -> list[str]:
        if not self.searching:
            return []
        return self.strategy.fuse([self.retriever.search(q, self.per_query) for q in queries], self.per_query)

    def retrieve(self, rewrites: list[str] | None = None) -> dict:
        """The queries (with the model's ``rewrites``, one per request) and each question's documents."""
        s, scenario, questions, trace = self.strategy, self.scenario, self.questions, self.trace
        n = len(questions)
        trace["rewrites"] = list(rewrites or [])
        if s.whole_prompt:
            query = whole_query(scenario, questions)
            pool = self._search([query])
            trace["queries"] = [[query]] + [[] for _ in questions[1:]]
        elif self.prompt_scope:
            queries = s.prompt_queries(scenario, questions, rewrites[0] if rewrites else None)
            pool = self._search(queries)
            trace["queries"] = [queries] + [[] for _ in questions[1:]]
        else:
            per_q = list(rewrites) if rewrites else [None] * n
            trace["queries"] = [s.queries(scenario, q, r) for q, r in zip(questions, per_q, strict=True)]
            trace["retrieved"] = [self._search(qs) for qs in trace["queries"]]
            pool = interleave(trace["retrieved"])
        trace["pool"] = pool
        if s.whole_answer:
            trace["retrieved"] = [list(pool) for _ in questions]
        elif self.prompt_scope:
            trace["retrieved"] = self._rerank(pool)
        return trace

    def _rerank(self, pool: list[str]) -> list[list[str]]:
        """Prompt scope, per-question layout: the pool in each question's own order, its first k (the question
        alone is its query: every pool document is already about the scenario -- ``pool_rerank``)."""
        s = self.strategy
        if not self.searching or self.k <= 0:
            return [[] for _ in self.questions]
        out = []
        for i, question in enumerate(self.questions):
            query = " ".join(question.split())
            self.trace["queries"][i] = [*self.trace["queries"][i], query]
            ranking = self.retriever.search(query, s.rerank_depth)
            out.append(rerank_pool(pool, ranking, s.rerank_mode, s.rrf_k)[: self.k])
        return out

    # ----------------------------------------------------------------------------------------- generation

    def _context(self, ids: list[str]) -> str:
        return format_context([(i, self.retriever.passage(i)) for i in ids]) if ids else ""

    def answer_requests(self) -> list[Request]:
        """One whole response (n + 1 texts' tokens), or the summary and one answer per question."""
        scenario, questions = self.scenario, self.questions
        tokens = self.max_new_tokens
        if self.strategy.whole_answer:
            text = whole_prompt(scenario, questions, self._context(self.trace["pool"]))
            return [Request(text, tokens * (len(questions) + 1))]
        texts = [summary_prompt(scenario or questions[0])]
        texts += [question_prompt(scenario, q, self._context(ids))
                  for q, ids in zip(questions, self.trace["retrieved"], strict=True)]
        return [Request(t, tokens) for t in texts]

    def finish(self, texts: list[str]) -> tuple[Response, dict]:
        questions, trace = self.questions, self.trace
        if self.strategy.whole_answer:
            summary, answers, trace["format_valid"] = parse_response(texts[0], questions)
            return Response(summary, [Answer(q, a, list(trace["pool"]))
                                      for q, a in zip(questions, answers, strict=True)]), trace
        return Response(texts[0], [Answer(q, a, list(ids)) for q, a, ids in
                                   zip(questions, texts[1:], trace["retrieved"], strict=True)]), trace

    def retrieval_response(self) -> Response:
        """No answers (retrieval metrics only): each question with the documents it would read."""
        return Response("", [Answer(q, "", list(ids)) for q, ids in
                             zip(self.questions, self.trace["retrieved"], strict=True)])


def run_stage(runs: list[PromptRun], requests_of: Callable[[PromptRun], list[Request]],
              generate: Generate) -> list[list[str] | None]:
    """One stage of every run in as few calls as possible: all their requests in one batched call per
    ``max_new_tokens``. Returns each run's texts in request order (None for a run with no request); each run's
    trace gets its calls and its own rows' tokens."""
    requests = [requests_of(r) for r in runs]
    outs: list[list[str] | None] = [[""] * len(rs) if rs else None for rs in requests]
    groups: dict[int, list[tuple[int, int]]] = {}
    for i, rs in enumerate(requests):
        for j, rq in enumerate(rs):
            groups.setdefault(rq.max_new_tokens, []).append((i, j))
    for max_new_tokens, where in groups.items():
        counts: list = []
        texts = generate([requests[i][j].text for i, j in where], max_new_tokens, counts)
        for row, ((i, j), text) in enumerate(zip(where, texts, strict=True)):
            outs[i][j] = text
            if row < len(counts):
                runs[i].trace["prompt_tokens"] += int(counts[row][0])
                runs[i].trace["generated_tokens"] += int(counts[row][1])
        for i in sorted({i for i, _ in where}):
            runs[i].trace["generate_calls"] += 1
    return outs


def generator(model, tokenizer, instruct: bool, gen: dict | None) -> Generate:  # noqa: ANN001
    """The batched generate function of ``model``: an :class:`Engine` (``complete``) or a transformers model."""
    settings = GenerationSettings.from_dict(gen)

    def generate(prompts: list[str], max_new_tokens: int, counts: list) -> list[str]:
        step = dataclasses.replace(settings, max_new_tokens=max_new_tokens)
        if isinstance(model, Engine):
            return model.complete(prompts, step, counts=counts)
        return generate_batch(model, tokenizer, prompts, instruct, **vars(step), counts=counts)

    return generate


def answer(parsed: Parsed, strategy: Strategy, model, tokenizer, instruct: bool, retriever=None, k: int = 3,
           budget: str = "per_question", gen: dict | None = None) -> tuple[Response, dict]:
    """Answer one parsed prompt; returns the response and a trace of what was asked and retrieved.

    ``model`` is a transformers model (batched ``generate``) or an :class:`~qwenft.clinical.engines.Engine`
    (``engine.model``: vLLM's, or the HF engine's own model). The trace holds ``queries`` and ``retrieved`` per
    question (for recall@k / MRR), the prompt's ``pool`` (every document it retrieved, in order), the model's
    ``rewrites``, ``format_valid`` (whether a whole response had the expected shape) and the costs:
    ``generate_calls``, ``prompt_tokens``, ``generated_tokens``. At most two batched calls: the rewrites, then
    the summary and every answer (or the whole response).
    """
    run = PromptRun(parsed, strategy, retriever, k, budget, GenerationSettings.from_dict(gen).max_new_tokens)
    generate = generator(model, tokenizer, instruct, gen)
    run.retrieve(run_stage([run], PromptRun.rewrite_requests, generate)[0])
    return run.finish(run_stage([run], PromptRun.answer_requests, generate)[0])
