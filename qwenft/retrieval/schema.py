"""Schema of the ``retrieval`` config group (``conf/retrieval/*.yaml``, built with ``_target_`` from
``qwenft.retrieval``): each key's rule and one-line doc, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from qwenft.rules import OPT_TEXT, TEXT, Int, setting


@dataclass(kw_only=True)
class RetrievalSchema:
    """``retrieval``: the knowledge base and the retriever over it (bm25, dense, hybrid or none)."""

    kb_path: str = setting(rule=TEXT, doc="the knowledge base: JSONL of {id, text}")
    cache_dir: str = setting(rule=TEXT, doc="where the index is kept between runs")
    model_path: str | None = setting(rule=OPT_TEXT, doc="dense/hybrid: a sentence-transformers folder (null: the "
                                                        "offline default)")
    batch_size: int = setting(rule=Int(1, 1 << 16), doc="dense: texts embedded per batch")
    rrf_k: int = setting(rule=Int(0, 10**6), doc="hybrid: reciprocal rank fusion's constant")
    depth: int = setting(rule=Int(1, 10**5), doc="hybrid: documents each retriever ranks before fusion")
    stopwords: str | None = setting(rule=OPT_TEXT, doc="bm25: stop-word list (en) or null")
