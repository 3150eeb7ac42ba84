"""Merging several rankings into one: reciprocal rank fusion, and a rank-interleaved union."""

from __future__ import annotations


def rrf_scores(rankings: list[list[str]], k: int = 60) -> dict[str, float]:
    """score(d) = sum over the rankings that contain d of 1 / (k + rank(d)), ranks starting at 1.

    ``k`` (60 in Cormack et al. 2009) damps the head of each ranking so no single list dominates.
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(dict.fromkeys(ranking), 1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return scores


def rrf(rankings: list[list[str]], k: int = 60) -> list[str]:
    """Documents by descending RRF score; ties broken by first appearance (rank, then list order)."""
    scores = rrf_scores(rankings, k)
    first = {}
    for rank in range(max((len(r) for r in rankings), default=0)):
        for ranking in rankings:
            if rank < len(ranking):
                first.setdefault(ranking[rank], len(first))
    return sorted(scores, key=lambda d: (-scores[d], first[d]))


def interleave(rankings: list[list[str]]) -> list[str]:
    """The union of several rankings, round-robin by rank (every query's top hit before any second hit)."""
    seen: dict[str, None] = {}
    for rank in range(max((len(r) for r in rankings), default=0)):
        for ranking in rankings:
            if rank < len(ranking):
                seen.setdefault(ranking[rank])
    return list(seen)
