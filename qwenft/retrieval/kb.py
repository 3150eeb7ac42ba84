"""A knowledge base read from JSONL, with the file hash that keys caches.

Two row formats, per line: qwenft's ``{id, text, title?}`` and MedRAG's ``{id, title, content}`` (the format of
the MedRAG corpora -- textbooks, StatPearls, PubMed, Wikipedia chunks -- used with the MIRAGE benchmark; their
extra ``contents`` field, title + content, is ignored). ``text`` wins when a row has both.

Indexes are cached on disk under the KB file's sha256, so an edited knowledge base can never be served from a
stale index, and an unchanged one is indexed once whatever path it is read from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qwenft.data.io import file_sha256, read_jsonl
from qwenft.errors import DataError


@dataclass
class KnowledgeBase:
    docs: list[dict]
    path: str
    sha256: str

    def __post_init__(self) -> None:
        self._by_id = {d["id"]: d for d in self.docs}

    def __len__(self) -> int:
        return len(self.docs)

    def ids(self) -> list[str]:
        return [d["id"] for d in self.docs]

    def doc(self, doc_id: str) -> dict:
        return self._by_id[doc_id]

    def index_text(self, doc: dict) -> str:
        """What gets indexed: the title (often the very term asked about) and the text."""
        return f"{doc['title']}. {doc['text']}" if doc.get("title") else doc["text"]

    def passage(self, doc_id: str) -> str:
        """What the model reads for a retrieved document."""
        return self.index_text(self._by_id[doc_id])


def load_kb(path: str | Path) -> KnowledgeBase:
    """Every line validated up front; problems are ``DataError``s naming the line."""
    path = Path(path).expanduser()
    docs, seen = [], set()
    for n, row in read_jsonl(path, what="knowledge base"):  # bounded, FIFO-refusing, strict UTF-8 and JSON
        if not isinstance(row, dict) or not isinstance(row.get("id"), str | int) or isinstance(row.get("id"), bool):
            raise DataError(str(path), n, "each line needs an 'id' (string or integer)")
        field = "text" if "text" in row else "content" if "content" in row else None
        if field is None or not isinstance(row[field], str) or not row[field].strip():
            what = f"a non-empty string {field!r}" if field else "a non-empty string 'text' (or 'content', MedRAG)"
            raise DataError(str(path), n, f"each line needs {what}")
        if row.get("title") is not None and not isinstance(row["title"], str):
            raise DataError(str(path), n, "'title' must be a string when present")
        doc = {"id": str(row["id"]), "text": row[field], "title": row.get("title") or ""}
        if doc["id"] in seen:
            raise DataError(str(path), n, f"duplicate id {doc['id']!r}")
        seen.add(doc["id"])
        docs.append(doc)
    if not docs:
        raise DataError(str(path), None, "no documents")
    return KnowledgeBase(docs, str(path), file_sha256(path))
