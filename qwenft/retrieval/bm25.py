"""BM25 over the knowledge base with ``bm25s``: the default, since invented terms are exact-match tokens that
lexical retrieval finds and a general-purpose embedding model has never seen."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from qwenft.atomic import atomic_dir
from qwenft.retrieval.kb import KnowledgeBase, load_kb

log = logging.getLogger(__name__)


def _import_bm25s():
    """``import bm25s`` runs ``jax.lax.top_k`` when JAX is installed, which starts JAX on the GPU and reserves
    75 % of its memory (seen on an H200: 139 -> 34 GiB free, and the next torch or JAX process fails with CUDA out
    of memory). Top-k over one query's scores needs no GPU: JAX stays on the CPU unless the caller already set
    ``JAX_PLATFORMS`` or imported JAX."""
    if "jax" not in sys.modules:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import bm25s

    return bm25s


INDEX_VERSION = "bm25s-en-v1"  # bump when the tokenisation or the indexed text changes


class BM25Retriever:
    def __init__(self, kb_path: str | Path, cache_dir: str | Path = "~/.cache/qwenft/bm25",
                 stopwords: str | None = "en") -> None:
        bm25s = _import_bm25s()
        self._bm25s, self.stopwords = bm25s, stopwords
        self.kb: KnowledgeBase = load_kb(kb_path)
        self.cache = Path(cache_dir).expanduser() / f"{self.kb.sha256[:16]}-{INDEX_VERSION}-{stopwords or 'all'}"
        self.from_cache = (self.cache / "params.index.json").is_file()
        if self.from_cache:
            self.index = bm25s.BM25.load(str(self.cache), show_progress=False)
        else:
            self.index = bm25s.BM25()
            texts = [self.kb.index_text(d) for d in self.kb.docs]
            self.index.index(bm25s.tokenize(texts, stopwords=stopwords, show_progress=False), show_progress=False)
            with atomic_dir(self.cache) as tmp:  # a concurrent or killed build never leaves half an index
                self.index.save(str(tmp), show_progress=False)
            log.info("BM25 index of %s (%d docs) cached in %s", self.kb.path, len(self.kb), self.cache)

    def search(self, query: str, k: int) -> list[str]:
        k = min(int(k), len(self.kb))
        if k <= 0 or not query.strip():
            return []
        tokens = self._bm25s.tokenize([query], stopwords=self.stopwords, return_ids=False, show_progress=False)
        if not tokens[0]:
            return []
        idx, scores = self.index.retrieve(tokens, k=k, show_progress=False)
        return [self.kb.docs[int(i)]["id"] for i, s in zip(idx[0], scores[0], strict=True) if s > 0]

    def passage(self, doc_id: str) -> str:
        return self.kb.passage(doc_id)
