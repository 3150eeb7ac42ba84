"""Read training/evaluation records and reject bad input before any work starts, naming file and line.

JSONL is parsed line by line from bytes, so every problem -- malformed JSON, non-UTF-8 bytes, a missing or empty
column -- is reported as ``file:line: problem``. CSV (line = editor line, header is line 1), Parquet and saved
HF datasets (line = 1-based row) go through ``datasets``. ``skip_bad_rows=True`` skips and counts instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from qwenft.errors import DataError

log = logging.getLogger(__name__)
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
SCHEMAS = ("prompt_completion", "messages", "clinical")
ROLES = ("system", "user", "assistant")


@dataclass
class LoadResult:
    records: list[dict]
    schema: str
    path: str
    sha256: str
    skipped: list[tuple[int, str]] = field(default_factory=list)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def _jsonl_rows(path: Path):
    data = path.read_bytes()
    if path.suffix == ".json" and data.lstrip()[:1] == b"[":
        try:
            rows = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(str(path), None, f"malformed JSON: {err}") from None
        for i, row in enumerate(rows, 1):
            yield i, row, None
        return
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield n, None, f"not UTF-8 (byte {err.start} of the line)"
            continue
        try:
            yield n, json.loads(text), None
        except json.JSONDecodeError as err:
            yield n, None, f"malformed JSON: {err.msg} (column {err.colno})"


def _table_rows(path: Path):
    import datasets

    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
        else:
            kind = "csv" if path.suffix == ".csv" else "parquet"
            ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as err:  # datasets/pyarrow raise many kinds; the user needs the file and the reason
        raise DataError(str(path), None, f"cannot read: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    offset = 2 if path.suffix == ".csv" else 1
    for i, row in enumerate(ds):
        yield i + offset, row, None


def _detect(row: dict) -> str:
    if "messages" in row:
        return "messages"
    if "scenario" in row or "questions" in row:
        return "clinical"
    return "prompt_completion"


def _text(row: dict, key: str, where: str) -> str:
    if key not in row:
        raise ValueError(f"missing column {key!r} (has {sorted(row)})")
    value = row[key]
    if not isinstance(value, str):
        raise ValueError(f"column {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"empty {key}")
    return value


def _normalise(row: dict, schema: str, max_chars: int | None) -> dict:
    if schema == "prompt_completion":
        out = {"prompt": _text(row, "prompt", ""), "completion": _text(row, "completion", "")}
        prompt_len = len(out["prompt"])
    elif schema == "messages":
        msgs = row.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise ValueError("column 'messages' must be a non-empty list of {role, content}")
        for m in msgs:
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"bad message {str(m)[:60]!r}: needs role in {ROLES} and string content")
        if msgs[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in msgs):
            raise ValueError("messages need a user turn and must end with the assistant's")
        if not msgs[-1]["content"].strip():
            raise ValueError("empty assistant message")
        out = {"messages": [{"role": m["role"], "content": m["content"]} for m in msgs]}
        prompt_len = sum(len(m["content"]) for m in msgs[:-1])
    else:
        out = {k: row[k] for k in ("id", "gold_docs", "new_words") if k in row}
        out["scenario"] = _text(row, "scenario", "")
        out["summary"] = _text(row, "summary", "")
        for key in ("questions", "answers"):
            value = row.get(key)
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise ValueError(f"column {key!r} must be a non-empty list of non-empty strings")
            out[key] = value
        if len(out["questions"]) != len(out["answers"]):
            raise ValueError(f"{len(out['questions'])} questions but {len(out['answers'])} answers")
        prompt_len = len(out["scenario"]) + sum(map(len, out["questions"]))
    if max_chars is not None and prompt_len > max_chars:
        raise ValueError(f"prompt is {prompt_len} chars, longer than the context allows (max_chars={max_chars})")
    return out


def load_records(path: str | Path, *, schema: str = "auto", columns: dict | None = None,
                 skip_bad_rows: bool = False, max_chars: int | None = None) -> LoadResult:
    """Every record of ``path`` in its canonical schema, or a DataError naming the first bad line."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, "file not found")
    if not path.is_dir() and path.suffix not in SUFFIXES:
        raise DataError(str(path), None, f"unsupported extension {path.suffix!r} (use {', '.join(SUFFIXES)} "
                                         "or a folder saved with datasets' save_to_disk)")
    if schema not in ("auto", *SCHEMAS):
        raise DataError(str(path), None, f"unknown schema {schema!r} (use auto or {', '.join(SCHEMAS)})")
    rename = {v: k for k, v in (columns or {}).items()}
    rows = _jsonl_rows(path) if path.suffix in (".jsonl", ".json") and not path.is_dir() else _table_rows(path)
    records, skipped = [], []
    for line, row, problem in rows:
        if problem is None and not isinstance(row, dict):
            problem = f"expected a JSON object, got {type(row).__name__}"
        if problem is None:
            row = {rename.get(k, k): v for k, v in row.items()}
            if schema == "auto":
                schema = _detect(row)
            try:
                records.append(_normalise(row, schema, max_chars))
                continue
            except ValueError as err:
                problem = str(err)
        if not skip_bad_rows:
            raise DataError(str(path), line, problem)
        skipped.append((line, problem))
    if skipped:
        log.warning("%s: skipped %d bad rows (lines %s)", path, len(skipped),
                    ", ".join(str(n) for n, _ in skipped[:20]) + (" ..." if len(skipped) > 20 else ""))
    if not records:
        raise DataError(str(path), None, "no records" + (f" ({len(skipped)} bad rows skipped)" if skipped else ""))
    return LoadResult(records, schema if schema != "auto" else "prompt_completion", str(path), _sha256(path), skipped)
