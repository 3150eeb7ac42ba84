"""BM25 + dense, fused by reciprocal rank fusion: exact matches on invented terms and paraphrase matches."""

from __future__ import annotations

from pathlib import Path

from qwenft.retrieval.bm25 import BM25Retriever
from qwenft.retrieval.dense import DenseRetriever
from qwenft.retrieval.fusion import rrf


class HybridRetriever:
    def __init__(self, kb_path: str | Path, cache_dir: str | Path = "~/.cache/qwenft", model_path: str | None = None,
                 rrf_k: int = 60, depth: int = 20) -> None:
        cache = Path(cache_dir).expanduser()
        self.bm25 = BM25Retriever(kb_path, cache / "bm25")
        self.dense = DenseRetriever(kb_path, cache / "dense", model_path)
        self.kb, self.rrf_k, self.depth = self.bm25.kb, rrf_k, depth

    def search(self, query: str, k: int) -> list[str]:
        """Both lists to ``max(k, depth)`` so a document ranked low by one retriever can still be fused in."""
        n = max(int(k), self.depth)
        return rrf([self.bm25.search(query, n), self.dense.search(query, n)], self.rrf_k)[: max(int(k), 0)]

    def passage(self, doc_id: str) -> str:
        return self.kb.passage(doc_id)
