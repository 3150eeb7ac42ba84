"""The ways to answer a multi-question clinical prompt (``conf/strategy/*.yaml``: six classes, two scopes).

``whole_prompt`` (:class:`WholePrompt`) sends the whole prompt as one retrieval query and one generation, then parses
the response back into the structure. Every other strategy answers per question -- the deterministic split of
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

**Scope and layout** (``strategy.scope``, ``strategy.layout``): two separate choices, so each query translation
can be compared on its own and after decomposition.

* ``scope: question`` (the default): the translation rewrites each question after decomposition (``rewrite_prompt``).
* ``scope: prompt``: the translation is applied once to the undecomposed prompt (``prompt_rewrite_prompt``, with
  ``{prompt}``: the scenario and the numbered questions), as its proponents use it: N paraphrases of the whole
  prompt fused by RRF (``rag_fusion``) or unioned (``multi_query``), one step-back question for the scenario,
  one hypothetical passage for the whole prompt (``hyde``). The whole prompt's queries retrieve the prompt's
  budget, k x n documents (the pool) -- the total a question-scope strategy reads over the prompt -- whatever
  ``budget``; its one rewrite may be n times as long as one question's (``rewrite_max_new_tokens`` x n), the
  same generation budget as n question rewrites. ``decomposition`` at prompt scope retrieves exactly
  ``whole_prompt``'s per_prompt documents.
* ``layout: per_question`` (the default): a summary and one answer per question, each from its own documents --
  at prompt scope, the pool reranked for the question by its own ranking (``rerank_mode``, ``rerank_depth``:
  ``pool_rerank``'s code), first k.
* ``layout: whole``: one whole response (``whole_prompt``'s prompt and parsing) from the prompt's pool.

The stages -- rewrites, retrieval, generation -- are :class:`qwenft.clinical.stages.PromptRun`, so an evaluation
can send the rewrites of many prompts to the engine in one call; :func:`answer` runs them for one prompt.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from qwenft.errors import UserError
from qwenft.retrieval.fusion import interleave, rrf
from qwenft.rules import BOOL, TEXT, Enum, Int, Rule, check_fields, setting

BUDGETS = ("per_question", "per_prompt")
SCOPES = ("question", "prompt")
LAYOUTS = ("per_question", "whole")
RERANK_MODES = ("question", "rrf")
# settings that only act at prompt scope (or in its per-question layout): left out of a question-scope
# strategy's cache key, so evaluations cached before scopes existed still resume
PROMPT_SCOPE_FIELDS = ("scope", "prompt_rewrite_prompt", "rerank_mode", "rerank_depth")
RERANK_FIELDS = ("rerank_mode", "rerank_depth")

# generate(prompts, max_new_tokens, counts) -> texts, one batched call; (prompt, generated) tokens per row -> counts
Generate = Callable[[list[str], int, list], list[str]]
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}\s*[.):]|[-*•]|(?:query|question|paraphrase)\s*\d*\s*:)\s*", re.IGNORECASE)


@dataclass
class PoolRerankSettings:
    """``strategy=pool_rerank``'s own keys (``qwenft.clinical.pool_rerank``), declared beside the other strategy
    keys so that validation reads them without importing the engines."""

    mode: str = setting("question", Enum(*RERANK_MODES), "each question's order of the pool: its own ranking "
                                                         "(question) or fused with the pool's (rrf)")
    depth: int = setting(1000, Int(1, 10**9), "depth of the question's own ranking")
    pool_factor: int = setting(1, Int(1, 1000), "the pool holds pool_factor x k x n documents")

    def __post_init__(self) -> None:
        check_fields(self, "strategy", PoolRerankSettings)


@dataclass
class Strategy:
    """The base strategy is ``decomposition``; subclasses change how retrieval queries are written and fused.

    ``query_template`` builds the original query from ``{question}`` and ``{scenario}``; ``rewrite_prompt`` (in
    the YAML, with ``{question}``, ``{scenario}``, ``{n}``) asks the loaded model for rewritten queries.
    """

    name: str = setting("decomposition", TEXT, "the strategy's name (its option file's, and the cache key's)")
    query_template: str = setting("{question} {scenario}", Rule("str"), "the original query from {question}, "
                                                                        "{scenario}")
    rewrite_prompt: str = setting("", Rule("str"), "asks the model for rewritten queries ({question}, {scenario}, "
                                                   "{n}); empty: no rewrite")
    rewrite_max_new_tokens: int = setting(48, Int(1, 4096), "tokens of one rewrite (x n at prompt scope)")
    n_queries: int = setting(1, Int(1, 32), "rewritten queries asked for ({n})")
    keep_original: bool = setting(True, BOOL, "retrieve with the original query too")
    rrf_k: int = setting(60, Int(0, 10**6), "reciprocal rank fusion's constant")
    scope: str = setting("question", Enum(*SCOPES), "question: per question, after decomposition | prompt: once "
                                                    "for the whole prompt (k x n documents)")
    layout: str = setting("per_question", Enum(*LAYOUTS), "per_question: summary + an answer per question | "
                                                          "whole: one whole response from the pool")
    prompt_rewrite_prompt: str = setting("", Rule("str"), "the rewrite request at prompt scope ({prompt}, "
                                                          "{scenario}, {n})")
    rerank_mode: str = setting("question", Enum(*RERANK_MODES), "prompt scope, per_question layout: the pool "
                                                                "reranked by the question (question | rrf)")
    rerank_depth: int = setting(1000, Int(1, 10**9), "... with the question's own ranking to this depth")

    whole_prompt: ClassVar[bool] = False

    def __post_init__(self) -> None:
        """A strategy built in Python meets the rules the CLI checks (its fields' ``setting``s); one cross check."""
        check_fields(self, "strategy", Strategy)
        if self.scope == "prompt" and self.rewrite_prompt and not self.prompt_rewrite_prompt:
            raise UserError(f"strategy.scope=prompt: {self.name} has no prompt_rewrite_prompt (the request that "
                            "rewrites the whole prompt); set strategy.prompt_rewrite_prompt")

    @property
    def whole_answer(self) -> bool:
        """One whole response for the prompt (``whole_prompt``, or ``layout: whole``) rather than one per question."""
        return self.whole_prompt or self.layout == "whole"

    def writes_queries(self) -> bool:
        """Whether the loaded model writes this strategy's retrieval queries at its scope."""
        if self.whole_prompt:
            return False
        return bool(self.prompt_rewrite_prompt if self.scope == "prompt" else self.rewrite_prompt)

    def key_settings(self) -> dict:
        """The settings that decide this strategy's predictions (``qwenft evaluate``'s cache key): every field,
        except the prompt-scope ones at question scope and the rerank ones where nothing is reranked -- so a
        question-scope strategy keeps the key it had before scopes existed, and no two scopes share one."""
        values = dataclasses.asdict(self)
        drop = set(PROMPT_SCOPE_FIELDS) if self.scope == "question" else set()
        if self.scope == "question" and self.layout == "per_question":
            drop.add("layout")
        if self.layout == "whole":
            drop.update(RERANK_FIELDS)
        return {k: v for k, v in values.items() if k not in drop}

    def original_query(self, scenario: str, question: str) -> str:
        return " ".join(self.query_template.format(question=question, scenario=scenario).split())

    def rewrite_requests(self, scenario: str, questions: list[str]) -> list[str]:
        """One prompt per question for the model, or none when this strategy does not rewrite."""
        if not self.rewrite_prompt:
            return []
        return [self.rewrite_prompt.format(question=q, scenario=scenario, n=self.n_queries) for q in questions]

    def prompt_rewrite_requests(self, scenario: str, questions: list[str]) -> list[str]:
        """Prompt scope: one request for the whole prompt (scenario and numbered questions), or none."""
        if not self.prompt_rewrite_prompt:
            return []
        return [self.prompt_rewrite_prompt.format(prompt=prompt_text(scenario, questions), scenario=scenario,
                                                  n=self.n_queries)]

    def prompt_queries(self, scenario: str, questions: list[str], rewrite: str | None = None) -> list[str]:
        """Prompt scope: the whole prompt as one query (``whole_prompt``'s), then what the model wrote for it."""
        original = whole_query(scenario, questions)
        written = self.parse_rewrite(rewrite) if rewrite is not None else []
        chosen = ([original] if self.keep_original or not written else []) + written
        return list(dict.fromkeys(q for q in chosen if q.strip()))

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
class StrategySchema(Strategy, PoolRerankSettings):
    """``strategy``: every key an option of the group may set (``qwenft.validation`` reads its rules)."""


@dataclass
class WholePrompt(Strategy):
    """``whole_prompt``: the whole prompt in, the whole response out, parsed into the structure as best it can."""

    name: str = "whole_prompt"
    whole_prompt: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scope != "question" or self.layout != "per_question":
            raise UserError(f"strategy.scope={self.scope}, layout={self.layout}: whole_prompt is already one query "
                            "and one response for the whole prompt; give scope and layout to another strategy "
                            "(decomposition with scope=prompt, layout=whole retrieves what whole_prompt does)")


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


def whole_query(scenario: str, questions: list[str]) -> str:
    """The whole prompt as one retrieval query (``whole_prompt``, ``pool_rerank``'s pool, prompt scope)."""
    return " ".join([scenario, *questions]).strip()


def prompt_text(scenario: str, questions: list[str]) -> str:
    """The whole prompt as the model reads it in a prompt-scope rewrite request: scenario, numbered questions."""
    return "\n".join([*([scenario] if scenario else []), *(f"{i}. {q}" for i, q in enumerate(questions, 1))])


def docs_per_query(budget: str, k: int, n_questions: int, whole_prompt: bool) -> int:
    """How many documents one retrieval unit (a question, or the whole prompt) may put in its context."""
    if budget not in BUDGETS:
        raise UserError(f"budget={budget!r}: use {' or '.join(BUDGETS)}")
    if k < 0:
        raise UserError(f"k={k}: the number of documents must be >= 0")
    return k * n_questions if budget == "per_prompt" and whole_prompt else k


def rerank_pool(pool: list[str], ranking: list[str], mode: str, rrf_k: int) -> list[str]:
    """The pool in one question's order (``pool_rerank``, and prompt scope's per-question layout): by the
    question's own ranking (``mode="question"``) or by reciprocal rank fusion of the pool rank and that ranking
    (``"rrf"``); pool documents the ranking does not reach keep their pool order, after the others."""
    q_rank = {d: r for r, d in enumerate(ranking)}
    p_rank = {d: r for r, d in enumerate(pool)}
    if mode == "rrf":
        def score(d: str) -> float:
            return 1 / (rrf_k + p_rank[d] + 1) + (1 / (rrf_k + q_rank[d] + 1) if d in q_rank else 0.0)
        return sorted(pool, key=lambda d: (-score(d), p_rank[d]))
    return sorted(pool, key=lambda d: (q_rank.get(d, len(ranking)), p_rank[d]))
