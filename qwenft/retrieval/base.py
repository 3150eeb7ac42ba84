"""What every retriever offers, and ``retrieval=none``.

A retriever ranks knowledge-base ids for a query (``search``) and hands back the passage a model reads
(``passage``). Strategies only use these two, so BM25, dense and hybrid are interchangeable by config.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from qwenft.retrieval.kb import KnowledgeBase


@runtime_checkable
class Retriever(Protocol):
    kb: KnowledgeBase

    def search(self, query: str, k: int) -> list[str]:
        """Up to ``k`` doc ids, best first; documents that match nothing in the query are left out."""
        ...

    def passage(self, doc_id: str) -> str:
        ...


def disabled() -> None:
    """``conf/retrieval/none.yaml``'s target: no retriever, answers come from the model alone."""
    return None
