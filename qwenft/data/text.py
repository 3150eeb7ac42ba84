"""Plain text out of any corpus file, for word discovery and new-word perplexity."""

from __future__ import annotations

from pathlib import Path

from qwenft.errors import DataError

_LOADERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def read_texts(path: str | Path, columns: list[str] | None = None) -> list[str]:
    """Every non-empty string of the chosen (default: all string) columns, one text per row and column.

    ``.txt`` gives one text per non-empty line; JSONL/CSV/Parquet go through ``datasets``; a folder is read as
    a dataset saved with ``save_to_disk``.
    """
    import datasets

    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, "file not found")
    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
        elif path.suffix in _LOADERS:
            ds = datasets.load_dataset(_LOADERS[path.suffix], data_files=str(path), split="train")
        else:
            raise DataError(str(path), None, f"unsupported extension {path.suffix!r} (use {', '.join(_LOADERS)})")
    except DataError:
        raise
    except Exception as err:  # datasets raises many kinds; the user needs the file and the reason
        raise DataError(str(path), None, f"cannot read: {str(err).splitlines()[0]}") from None
    names = columns or [n for n, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
    missing = [c for c in names if c not in ds.column_names]
    if missing:
        raise DataError(str(path), None, f"missing columns {missing}; has {ds.column_names}")
    texts = [row[c] for row in ds for c in names if isinstance(row[c], str) and row[c].strip()]
    if not texts:
        raise DataError(str(path), None, "no text found")
    return texts
