"""``pool_rerank``: the whole prompt retrieves the pool, each question picks its own documents from it.

On real multi-question prompts the two retrieval styles fail differently. The whole prompt as one query finds
a question's gold document often *somewhere* in its k x n results, because the scenario and the sibling
questions add context, but it cannot say which of them belongs to which question; one query per question
(``decomposition``) ranks for the question but loses that context. ``pool_rerank`` combines them at the same
budget as ``decomposition`` (k documents per question, k x n per prompt):

1. the whole prompt (scenario + all questions, exactly the ``whole_prompt`` query) retrieves a pool of
   ``pool_factor`` x k x n documents;
2. each question's own query (``query_template``; the shipped config uses the question alone, since every pool
   document is already about the scenario) ranks the knowledge base to ``depth``;
   the pool is reordered by that ranking (``mode: question``), or by reciprocal rank fusion of the pool rank
   and the question rank (``mode: rrf``, ``rrf_k``); pool documents the question's ranking does not reach keep
   their pool order, after the others;
3. the question reads the first k; generation is then exactly ``decomposition``'s (one batched call: the
   summary and every answer).

It needs no model for retrieval (no rewrites) and works with any retriever (BM25, dense, hybrid): it only uses
``search``. Two retrieval passes per question (pool + own ranking) is its cost.

It answers a prompt itself (:meth:`PoolRerank.answer_prompt`), which ``qwenft evaluate`` calls; the generic
``qwenft.clinical.stages.answer`` has no hook for a prompt-level pool, so with a retriever it refuses this
strategy with a clear error instead of silently running ``decomposition`` (without one -- the training
callback -- there is no pool to build and it is ``decomposition``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from qwenft.clinical.output import Response
from qwenft.clinical.parse import Parsed
from qwenft.clinical.stages import answer
from qwenft.clinical.strategies import BUDGETS, Decomposition, PoolRerankSettings, Strategy, rerank_pool
from qwenft.errors import UserError


class _Chosen:
    """A retriever whose ``search`` returns the documents already chosen for each question's query; what the
    generic ``answer`` reads through it is exactly the reranked pool."""

    def __init__(self, retriever, chosen: dict[str, list[str]]) -> None:
        self.retriever, self.chosen, self.kb = retriever, chosen, getattr(retriever, "kb", None)

    def search(self, query: str, k: int) -> list[str]:
        return self.chosen.get(query, [])[:k]

    def passage(self, doc_id: str) -> str:
        return self.retriever.passage(doc_id)


@dataclass
class PoolRerank(Strategy, PoolRerankSettings):
    """See the module docstring; ``depth``, ``mode``, ``pool_factor`` and ``rrf_k`` are its knobs."""

    name: str = "pool_rerank"
    query_template: str = "{question}"

    def __post_init__(self) -> None:
        Strategy.__post_init__(self)
        PoolRerankSettings.__post_init__(self)
        if self.scope != "question" or self.layout != "per_question":
            raise UserError(f"strategy.scope={self.scope}, layout={self.layout}: pool_rerank is already the whole "
                            "prompt's pool reranked per question (decomposition with scope=prompt); scope and "
                            "layout are not its settings")

    def rewrite_requests(self, scenario: str, questions: list[str]) -> list[str]:
        """Reached only through the generic ``answer`` *with* a retriever, which cannot build the pool: refuse.
        Without a retriever (e.g. the training callback) pool_rerank is decomposition, and runs as such."""
        raise UserError("strategy=pool_rerank needs the whole prompt's pool: it runs in `qwenft evaluate`; "
                        "for `qwenft answer` use strategy=decomposition or whole_prompt")

    def rerank(self, pool: list[str], ranking: list[str]) -> list[str]:
        """The pool in this question's order (module docstring, step 2)."""
        return rerank_pool(pool, ranking, self.mode, self.rrf_k)

    def retrieve(self, parsed: Parsed, retriever, k: int, budget: str = "per_question") -> dict:
        """Retrieval alone: the pool, each question's query and its k documents (a trace like ``answer``'s)."""
        if budget not in BUDGETS:
            raise UserError(f"budget={budget!r}: use {' or '.join(BUDGETS)}")
        scenario, questions = parsed.units()
        whole = " ".join([scenario, *questions]).strip()
        own = [self.original_query(scenario, q) for q in questions]
        trace: dict = {"strategy": self.name, "budget": budget, "retrieval": retriever is not None,
                       "docs_per_query": k, "queries": [[q] for q in own], "rewrites": [], "retrieved": [],
                       "pool": [], "generate_calls": 0, "prompt_tokens": 0, "generated_tokens": 0,
                       "format_valid": True}
        if retriever is None or k <= 0:
            trace["retrieved"] = [[] for _ in questions]
            return trace
        pool = retriever.search(whole, self.pool_factor * k * len(questions))
        trace["pool"] = pool
        trace["queries"][0] = [whole, *trace["queries"][0]]  # the pool query runs once per prompt
        trace["retrieved"] = [self.rerank(pool, retriever.search(q, self.depth))[:k] for q in own]
        return trace

    def answer_prompt(self, parsed: Parsed, model, tokenizer, instruct: bool, retriever=None, k: int = 3,
                      budget: str = "per_question", gen: dict | None = None) -> tuple[Response, dict]:
        """Retrieve as above, then generate exactly as ``decomposition`` does with those documents."""
        found = self.retrieve(parsed, retriever, k, budget)
        plain = Decomposition(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Decomposition)})
        plain.name = self.name
        scenario, questions = parsed.units()
        own = [plain.original_query(scenario, q) for q in questions]
        view = _Chosen(retriever, dict(zip(own, found["retrieved"], strict=True))) if retriever is not None else None
        response, trace = answer(parsed, plain, model, tokenizer, instruct, view, k, "per_question", gen)
        return response, {**trace, **{key: found[key] for key in ("budget", "queries", "retrieved", "pool")}}
