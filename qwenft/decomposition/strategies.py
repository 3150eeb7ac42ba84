"""The six ways to answer a multi-question clinical prompt; each differs only in what it retrieves with.

``none``: the whole prompt is one query and one generation. The others answer per question (the deterministic
decomposition of the parsed prompt) and differ in their retrieval queries: ``decomposition`` (the question
itself), ``multi_query`` (N model paraphrases, union of results), ``rag_fusion`` (N queries, reciprocal rank
fusion), ``step_back`` (a more generic question retrieved alongside), ``hyde`` (a hypothetical passage written
by the model). All query rewrites of a prompt are one batched generation; all answers (+ the summary) another.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwenft.decomposition.generate import generate_batch
from qwenft.decomposition.output import Answer, Response, parse_response
from qwenft.decomposition.parse import Parsed
from qwenft.decomposition.templates import question_prompt, summary_prompt, whole_prompt
from qwenft.retrieval.index import rrf


@dataclass
class Strategy:
    name: str
    n_queries: int = 3
    rrf_k: int = 60
    rewrite_prompt: str = ""  # {question} / {scenario}; what the model is asked to write for retrieval


def _retrieve(retriever, queries: list[str], k: int, fuse: str, rrf_k: int) -> list[str]:
    if retriever is None or k <= 0:
        return []
    rankings = [retriever.search(q, k) for q in queries if q.strip()]
    if fuse == "rrf":
        return rrf(rankings, rrf_k)[:k]
    seen: list[str] = []
    for rank in range(k):  # union, interleaved by rank, first k
        for r in rankings:
            if rank < len(r) and r[rank] not in seen:
                seen.append(r[rank])
    return seen[:k]


def _context(retriever, ids: list[str]) -> str:
    return "\n".join(f"[{i}] {retriever.text(i)}" for i in ids) if ids else ""


def answer(parsed: Parsed, strategy: Strategy, model, tokenizer, instruct: bool, retriever=None, k: int = 3,
           budget: str = "per_question", gen: dict | None = None) -> tuple[Response, dict]:
    """Returns the response and a record of what was retrieved (for recall@k / MRR)."""
    gen = gen or {}
    questions = parsed.questions or [parsed.scenario]
    scenario = parsed.scenario if parsed.questions else ""
    if strategy.name == "none":
        kk = k * len(questions) if budget == "per_prompt" else k
        ids = _retrieve(retriever, [scenario + " " + " ".join(questions)], kk, "union", strategy.rrf_k)
        text = generate_batch(model, tokenizer, [whole_prompt(scenario, questions, _context(retriever, ids))],
                              instruct, **gen)[0]
        summary, answers, valid = parse_response(text, questions)
        return (Response(summary, [Answer(q, a, ids) for q, a in zip(questions, answers, strict=True)]),
                {"retrieved": [ids] * len(questions), "format_valid": valid, "generate_calls": 1})
    calls = 0
    if strategy.name in ("multi_query", "rag_fusion", "step_back", "hyde") and retriever is not None:
        n = strategy.n_queries if strategy.name in ("multi_query", "rag_fusion") else 1
        rewrites = [strategy.rewrite_prompt.format(question=q, scenario=scenario) for q in questions for _ in range(n)]
        written = generate_batch(model, tokenizer, rewrites, instruct, **{**gen, "do_sample": n > 1})
        calls += 1
        queries = [[f"{scenario} {q}".strip(), *written[i * n : (i + 1) * n]] for i, q in enumerate(questions)]
    else:
        queries = [[f"{scenario} {q}".strip()] for q in questions]
    fuse = "rrf" if strategy.name == "rag_fusion" else "union"
    retrieved = [_retrieve(retriever, qs, k, fuse, strategy.rrf_k) for qs in queries]
    prompts = [summary_prompt(scenario or questions[0])]
    prompts += [question_prompt(scenario, q, _context(retriever, ids)) for q, ids in zip(questions, retrieved, strict=True)]
    outs = generate_batch(model, tokenizer, prompts, instruct, **gen)
    calls += 1
    resp = Response(outs[0], [Answer(q, a, ids) for q, a, ids in zip(questions, outs[1:], retrieved, strict=True)])
    return resp, {"retrieved": retrieved, "format_valid": True, "generate_calls": calls}
