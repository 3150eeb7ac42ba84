"""Plain text out of any corpus file, for word discovery and new-word perplexity.

Read by the same strict readers as training data (``qwenft.data.io``): regular files only, size-bounded, strict
UTF-8, so an empty, binary or latin-1 corpus is one ``file:line: problem`` line, never a traceback from a
dataset builder.
"""

from __future__ import annotations

from pathlib import Path

from qwenft.data.io import SUFFIXES, TEXT_UNITS, _json_type, _txt_rows, iter_rows
from qwenft.errors import DataError, UserError
from qwenft.inputs import read_bytes

TEXT_SUFFIXES = (".txt", *SUFFIXES)


def _txt(path: Path, unit: str) -> list[str]:
    """The documents training reads from the same file (``qwenft.data.io``, schema ``text``)."""
    if unit not in TEXT_UNITS:
        raise UserError(f"text_unit={unit!r}: use one of {', '.join(TEXT_UNITS)}")
    return [row["text"] for _, row, _ in _txt_rows(path, read_bytes(path, "data"), unit)]


def read_texts(path: str | Path, columns: list[str] | None = None, unit: str = "line") -> list[str]:
    """Every non-empty string of the chosen (default: all string) columns, one text per row and column.

    ``.txt`` gives one text per document, cut by ``unit`` exactly as training cuts raw text (``line``: each
    non-empty line; ``paragraph``; ``document``); JSONL/JSON/CSV/Parquet one text per string value of each row;
    a folder is read as a dataset saved with ``save_to_disk``. A named column missing from a row is an error at
    that row's line.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, "file not found")
    if path.is_dir() or path.suffix.lower() != ".txt":
        if not path.is_dir() and path.suffix.lower() not in TEXT_SUFFIXES:
            raise DataError(str(path), None, f"unsupported extension {path.suffix or '(none)'!r} "
                                             f"(use {', '.join(TEXT_SUFFIXES)} or a saved dataset folder)")
        texts: list[str] = []
        for line, row, problem in iter_rows(path):
            if problem is not None:
                raise DataError(str(path), line, problem)
            if not isinstance(row, dict):
                raise DataError(str(path), line, f"expected a JSON object, got {_json_type(row)}")
            if columns:
                missing = [c for c in columns if c not in row]
                if missing:
                    raise DataError(str(path), line, f"missing columns {missing}; has {sorted(row)[:20]}")
                values = [row[c] for c in columns]
            else:
                values = list(row.values())
            texts += [v for v in values if isinstance(v, str) and v.strip()]
    else:
        texts = _txt(path, unit)
    if not texts:
        raise DataError(str(path), None, "no text found (the corpus is empty or has no non-blank string values)")
    for i, t in enumerate(texts):  # JSON escapes can smuggle in lone surrogates, which tokenizers reject
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(str(path), None, f"text {i + 1} holds an unpaired surrogate escape (\\ud800-\\udfff), "
                                             "not valid Unicode") from None
    return texts
