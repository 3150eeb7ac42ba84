"""Read training/evaluation records and reject bad input before any work starts, naming file and line.

Long fine-tuning jobs on messy clinical exports must not die hours in on row 48 213, so every record is read and
validated up front and every problem becomes one ``DataError`` line: ``file:line: problem``.

* JSONL (and ``.json``: JSON lines, one object, or a top-level array) is parsed here from bytes, line by line, so
  malformed JSON, non-UTF-8 bytes or a missing column are reported with the line an editor shows.
* CSV is parsed with the stdlib ``csv`` module rather than ``datasets``: it keeps every value a string (a numeric
  completion stays text instead of becoming an int), and it tracks physical lines, so the reported number is the
  editor line where the record starts (header = line 1), even with quoted multi-line fields.
* Parquet goes through pyarrow and saved HF datasets through ``datasets.load_from_disk``; their "line" is the
  1-based record index.
* Anything else ``datasets.load_dataset`` reads -- a Hub dataset (``owner/name``, ``hf://datasets/owner/name``
  or one file of it, ``hf://datasets/owner/name/train.jsonl``), a local folder of data files or with a loading
  script, each with ``data_files`` -- is loaded through it, one split per use (``split``), and its rows go
  through the same checks; their "line" is the record index too.

``skip_bad_rows=True`` skips and reports bad rows in ``LoadResult.skipped`` instead of failing; an empty result
is still an error because training on nothing is never what was meant.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwenft.errors import DataError, UserError
from qwenft.inputs import check_regular, decode_utf8, read_bytes

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
SCHEMAS = ("prompt_completion", "messages", "clinical", "text")
#: Raw text (schema ``text``): a ``.txt`` file, cut into documents by ``text_unit`` as datasets' ``text`` loader
#: cuts them with ``sample_by`` (``line``, the default there and here; ``paragraph``: blank-line separated;
#: ``document``: the whole file), or any file above with a ``text`` column.
TEXT_UNITS = ("line", "paragraph", "document")
ROLES = ("system", "user", "assistant")
#: Canonical column names per schema (required first, then optional pass-through ones).
FIELDS: dict[str, tuple[str, ...]] = {
    "prompt_completion": ("prompt", "completion", "id"),
    "messages": ("messages", "id"),
    "clinical": ("scenario", "questions", "summary", "answers", "id", "new_words", "gold_docs"),
    "text": ("text", "id"),
}
CANONICAL = frozenset(name for names in FIELDS.values() for name in names)
#: Columns holding lists: in CSV they arrive as JSON text and are decoded.
LIST_FIELDS = frozenset({"messages", "questions", "answers", "new_words", "gold_docs"})
_SUPPORTED = f"{', '.join(SUFFIXES)} or a folder saved with datasets' save_to_disk"

#: The split a use of data reads from a ``load_dataset`` source, by the names data sets give it (first found).
SPLIT_NAMES: dict[str, tuple[str, ...]] = {"train": ("train",), "val": ("validation", "val", "valid", "dev"),
                                           "test": ("test",)}
#: A folder holding one of these was written by ``save_to_disk`` (read by ``load_from_disk``).
SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}

Row = tuple[int, Any, str | None]  # (line or record number, parsed value, problem or None)


@dataclass
class LoadResult:
    """What was loaded, plus what a run record needs to say exactly which data it trained on."""

    records: list[dict]
    schema: str
    path: str
    sha256: str
    skipped: list[tuple[int, str]] = field(default_factory=list)


class _Bad(Exception):
    """A problem with one record; becomes a DataError (or a skipped row) carrying the record's line."""


# --------------------------------------------------------------------------------------------------- reading


def _json_type(value: Any) -> str:
    """JSON's name for a value's type: researchers read 'array'/'null' in their files, not 'list'/'NoneType'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _DuplicateKey(ValueError):
    """A JSON object naming one key twice: ``json`` would silently keep the last value."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` that refuses duplicate keys instead of keeping one of the values without a word."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(f"duplicate key {dup[:60]!r} in one object (JSON keeps only one of the values)")
    return out


def _loads(text: str) -> tuple[Any, str | None]:
    """Parse one JSON document; any failure (bad syntax, huge ints, deep nesting) is a message, never a raise."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys), None
    except json.JSONDecodeError as err:
        return None, f"malformed JSON: {err.msg} (column {err.colno})"
    except _DuplicateKey as err:
        return None, str(err)
    except ValueError as err:  # e.g. an integer literal beyond Python's digit limit
        return None, f"malformed JSON: {str(err).splitlines()[0]}"
    except RecursionError:
        return None, "malformed JSON: nested too deeply"


def loads_strict(text: str) -> tuple[Any, str | None]:
    """(value, None) or (None, one-line problem): JSON read as data files are read -- duplicate keys, huge ints
    and deep nesting are problems, never a raise. Knowledge bases and ``qwenft serve``'s request bodies too."""
    return _loads(text)


def _json_lines(path: Path, data: bytes) -> Iterator[Row]:
    """One row per non-blank line; decoding and parsing per line so one bad line does not hide the rest."""
    offset = 0
    for n, raw in enumerate(data.split(b"\n"), 1):
        start, offset = offset, offset + len(raw) + 1
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a BOM from Windows editors is not an error
            raw, start = raw[3:], start + 3
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            bom = n == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff")
            yield n, None, (f"not valid UTF-8: byte 0x{raw[err.start]:02x} at byte offset {err.start} of the line "
                            f"(offset {start + err.start} in the file)"
                            + ("; it starts with a UTF-16 byte-order mark: the file is UTF-16, not UTF-8" if bom
                               else ""))
            continue
        value, problem = _loads(text)
        if problem is not None and "\r" in text.rstrip("\r"):  # old-Mac line ends: the editor shows 2 lines
            problem += " (the line holds a bare carriage return \\r; JSON lines are separated by \\n)"
        yield n, value, problem


def _json_array(path: Path, text: str) -> Iterator[Row]:
    """Elements of a top-level JSON array, each numbered by the line where it starts.

    A structural error (the array itself is broken) cannot be skipped: nothing after it can be trusted.
    """
    decoder, ws = json.JSONDecoder(object_pairs_hook=_unique_keys), " \t\r\n"
    line, counted = 1, 0

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in ws:
            pos += 1
        return pos

    i = skip(0) + 1  # past '['
    i = skip(i)
    if i < len(text) and text[i] == "]":
        i += 1
    else:
        while True:
            where = line_at(i)
            try:
                value, i = decoder.raw_decode(text, i)
            except json.JSONDecodeError as err:
                problem = f"malformed JSON: {err.msg} (column {err.colno})"
                raise DataError(str(path), line_at(err.pos), problem) from None
            except _DuplicateKey as err:
                raise DataError(str(path), where, str(err)) from None
            except (ValueError, RecursionError) as err:
                problem = "nested too deeply" if isinstance(err, RecursionError) else str(err).splitlines()[0]
                raise DataError(str(path), where, f"malformed JSON: {problem}") from None
            yield where, value, None
            i = skip(i)
            if i < len(text) and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < len(text) and text[i] == "]":
                i += 1
                break
            raise DataError(str(path), line_at(min(i, len(text))),
                            "malformed JSON: expected ',' or ']' in the top-level array"
                            + ("" if i < len(text) else " (the file ends inside the array)"))
    i = skip(i)
    if i < len(text):
        raise DataError(str(path), line_at(i), "malformed JSON: extra data after the top-level array")


def _json_rows(path: Path, data: bytes) -> Iterator[Row]:
    """``.jsonl`` is JSON lines; ``.json`` may also be a top-level array or one (pretty-printed) object."""
    if path.suffix.lower() == ".json":
        head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        if head == b"[":
            yield from _json_array(path, decode_utf8(data, str(path)))
            return
        if head == b"{":
            text = decode_utf8(data, str(path))
            value, problem = _loads(text)
            first = text.count("\n", 0, len(text) - len(text.lstrip())) + 1
            if problem is None:  # a single object, possibly spread over many lines
                yield first, value, None
                return
            if text.lstrip().split("\n", 1)[0].strip() == "{":  # pretty-printed: the error is deeper than line 1
                yield from _pretty_object_error(text)
                return
    yield from _json_lines(path, data)


def _pretty_object_error(text: str) -> Iterator[Row]:
    """The located parse error of a multi-line object (JSON lines would blame its opening ``{`` line)."""
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        hint = ("; a .json file holds one object, an array of objects, or one object per line"
                if err.msg == "Extra data" else "")
        yield err.lineno, None, f"malformed JSON: {err.msg} (column {err.colno}){hint}"
        return
    except (ValueError, RecursionError):
        pass
    yield 1, None, _loads(text)[1] or "malformed JSON"


def _csv_rows(path: Path, data: bytes) -> Iterator[Row]:
    """Rows as ``{header: str}``, numbered by the editor line where each record starts (header = line 1)."""
    text = decode_utf8(data, str(path))
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # clinical notes exceed the 128 KiB default
    rows: list[Row] = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                hint = " (a quote opened here is never closed)" if "unexpected end of data" in str(err) else ""
                raise DataError(str(path), start, f"bad CSV: {err}{hint}") from None
            if not fields or all(not f.strip() for f in fields):
                continue  # blank lines and empty spreadsheet rows (",,,") carry nothing
            if header is None:
                header = [h.strip() for h in fields]
                seps = [sep for sep in (";", "\t", "|") if len(header) == 1 and sep in header[0]]
                if seps:  # European Excel exports use ';': say so instead of "cannot tell the schema"
                    raise DataError(str(path), start, f"the header is one column {header[0][:60]!r}; the file looks "
                                                      f"{seps[0]!r}-separated, but CSV here must be comma-separated")
                dupes = sorted({h for h in header if header.count(h) > 1})
                if dupes:
                    raise DataError(str(path), start, f"duplicate column names in the header: {dupes}")
                continue
            if len(fields) != len(header):
                rows.append((start, None, f"has {len(fields)} fields but the header has {len(header)}"))
                continue
            rows.append((start, dict(zip(header, fields, strict=True)), None))
    finally:
        csv.field_size_limit(old_limit)
    yield from rows


def _parquet_rows(path: Path) -> Iterator[Row]:
    """Parquet rows numbered from 1; any pyarrow failure is a DataError about the whole file."""
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(str(path)).to_pylist()
    except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ...; the user needs the file and the reason
        raise DataError(str(path), None, f"cannot read Parquet: {_first_line(err)}") from None
    for i, row in enumerate(rows, 1):
        yield i, row, None


def _dataset_rows(path: Path) -> Iterator[Row]:
    """Rows of a ``save_to_disk`` folder (its ``train`` split if it is a DatasetDict), numbered from 1."""
    try:
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if "train" in ds:
                ds = ds["train"]
            elif len(ds) == 1:
                ds = next(iter(ds.values()))
            else:
                raise DataError(str(path), None, f"saved DatasetDict has splits {sorted(ds)} and no 'train'; "
                                                 "point at one split's folder")
        rows = ds.to_list()
    except DataError:
        raise
    except Exception as err:  # not a saved dataset, corrupt arrow files, ...
        raise DataError(str(path), None, f"cannot read as a dataset saved with save_to_disk "
                                         f"(supported: {_SUPPORTED}): {_first_line(err)}") from None
    for i, row in enumerate(rows, 1):
        yield i, row, None


def hub_source(path: str | Path) -> bool:
    """``hf://...``, or ``owner/name`` that is no local path and no data file name: a Hub dataset id."""
    text = str(path)
    if text.startswith("hf://"):
        return True
    return (re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) is not None and not Path(text).exists()
            and Path(text).suffix.lower() not in _BUILDERS)


def load_dataset_source(path: str | Path) -> bool:
    """What ``load_records`` reads with ``datasets.load_dataset``: a Hub dataset, or a local folder of data files
    or a loading script (a folder written by ``save_to_disk`` goes through ``load_from_disk`` instead)."""
    if hub_source(path):
        return True
    folder = Path(path)
    return (folder.is_dir() and not any((folder / m).exists() for m in SAVED_MARKERS)
            and any(p.is_file() for p in folder.iterdir()))


def _load_dataset_rows(source: str, split: str, data_files: Any) -> tuple[list[dict], str]:
    """The rows of one split of a ``datasets.load_dataset`` source, and a sha256 of their content.

    ``hf://datasets/owner/name/file.jsonl`` is read as that one file; ``owner/name`` (or ``hf://datasets/owner/name``)
    and a local folder as a data set whose ``split`` is picked by its usual names (``SPLIT_NAMES``).
    """
    import datasets

    try:
        suffix = Path(source).suffix.lower()
        if source.startswith("hf://") and suffix in _BUILDERS:  # one file of a Hub repo
            ds = datasets.load_dataset(_BUILDERS[suffix], data_files=source)
        else:
            name = source.removeprefix("hf://datasets/").rstrip("/")
            ds = datasets.load_dataset(name, data_files=data_files) if data_files else datasets.load_dataset(name)
    except Exception as err:  # offline, no such repo, unreadable files: one line naming the source
        if Path(source).is_dir():
            raise DataError(source, None, "cannot read as a dataset saved with save_to_disk or as data files "
                                          f"datasets.load_dataset reads: {_first_line(err)}") from None
        raise DataError(source, None, "cannot load with datasets.load_dataset (no such local file or folder "
                                      f"either): {_first_line(err)}") from None
    if isinstance(ds, datasets.DatasetDict):
        names = SPLIT_NAMES.get(split, (split,))
        found = next((n for n in names if n in ds), None)
        if found is None and split == "train" and len(ds) == 1:
            found = next(iter(ds))
        if found is None:
            raise DataError(source, None, f"no {split} split (it has {', '.join(sorted(ds))}; looked for "
                                          f"{', '.join(names)}); data.data_files can name the files of each split")
        ds = ds[found]
    rows = ds.to_list()
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
    return rows, digest


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message, so a DataError stays one line."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def file_sha256(path: str | Path) -> str:
    """The sha256 every run record, index cache and evaluation key uses: of a file's bytes, or of a folder's files
    (relative name and bytes, in name order)."""
    return _sha256(Path(path), None)


def read_jsonl(path: str | Path, what: str = "file") -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of a JSON-lines file, gzipped when it ends in ``.gz``.

    The one JSONL path for training data, knowledge bases and evaluation sets: a regular file within the size
    limit (``qwenft.inputs``; the decompressed text too), strict UTF-8 and strict JSON (duplicate keys, huge
    integers and deep nesting are errors); the first bad line is a ``DataError`` naming file and line.
    """
    path = Path(path)
    data = read_bytes(path, "data", what)
    if path.suffix == ".gz":
        data = _gunzip(path, data, what)
    for line, value, problem in _json_lines(path, data):
        if problem is not None:
            raise DataError(str(path), line, problem)
        yield line, value


def _gunzip(path: Path, data: bytes, what: str) -> bytes:
    import gzip

    from qwenft.inputs import limit_bytes

    limit = limit_bytes("data")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(limit + 1)
    except (OSError, EOFError) as err:  # not gzip, or cut short
        raise DataError(str(path), None, f"cannot read: {_first_line(err)}") from None
    if len(out) > limit:
        raise DataError(str(path), None, f"{what} is over the limit of {limit >> 20} MiB once decompressed "
                                         "(raise it with QWENFT_MAX_INPUT_MB=<MiB>)")
    return out


def _sha256(path: Path, data: bytes | None) -> str:
    """Hash of the file bytes, or of every file (relative name and bytes) of a folder, for run records."""
    h = hashlib.sha256()
    if data is not None:
        h.update(data)
        return h.hexdigest()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ validating


class _View:
    """A raw row seen through the column mapping; error messages name the file's own column names."""

    def __init__(self, row: dict, columns: dict[str, str], from_csv: bool) -> None:
        self.row, self.columns, self.from_csv = row, columns, from_csv

    def name(self, key: str) -> str:
        src = self.columns.get(key, key)
        return repr(src) if src == key else f"{src!r} (mapped to {key!r})"

    def has(self, key: str) -> bool:
        return self.columns.get(key, key) in self.row

    def keys(self) -> str:
        keys = sorted(self.row)
        shown = ", ".join(repr(k if len(k) <= 40 else k[:37] + "...") for k in keys[:20])
        return f"available keys: [{shown}{', ...' if len(keys) > 20 else ''}]" if keys else "the record has no keys"

    def get(self, key: str, *, required: bool = True) -> Any:
        src = self.columns.get(key, key)
        if src not in self.row:
            if required:
                raise _Bad(f"missing column {self.name(key)}; {self.keys()}")
            return None
        value = self.row[src]
        if self.from_csv and key in LIST_FIELDS and isinstance(value, str):
            if not value.strip():
                return None
            value, problem = _loads(value)
            if problem is not None:
                raise _Bad(f"column {self.name(key)} must hold a JSON array in CSV: {problem}")
        return value


def _check_text(value: str, what: str) -> str:
    """A non-blank string that is real Unicode (JSON escapes can smuggle in lone surrogates)."""
    if not value.strip():
        raise _Bad(f"empty {what} (blank or whitespace only)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad(f"{what} contains an unpaired surrogate escape (\\ud800-\\udfff), which is not valid Unicode") \
            from None
    return value


def _text(view: _View, key: str) -> str:
    value = view.get(key)
    if not isinstance(value, str):
        raise _Bad(f"column {view.name(key)} must be a string, got {_json_type(value)}")
    return _check_text(value, f"column {view.name(key)}")


def _text_list(view: _View, key: str, *, required: bool = True) -> list[str] | None:
    value = view.get(key, required=required)
    if value is None and not required:
        return None
    if not isinstance(value, list):
        raise _Bad(f"column {view.name(key)} must be an array of strings, got {_json_type(value)}")
    if required and not value:
        raise _Bad(f"column {view.name(key)} is an empty array")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Bad(f"column {view.name(key)}[{i}] must be a string, got {_json_type(item)}")
        _check_text(item, f"column {view.name(key)}[{i}]")
    return list(value)


def _gold_docs(view: _View, n_questions: int) -> list[list[str]] | None:
    """``gold_docs`` in its canonical shape, one list of document ids per question. Two shapes are accepted: a
    list of lists (``[["d1", "d2"], ["d3"]]``) and a flat list of one id per question (``["d1", "d3"]``, as
    written by hand); a flat list read as lists would score each id's characters. Anything else is ``_Bad``."""
    gold = view.get("gold_docs", required=False)
    if gold is None:
        return None
    name = view.name("gold_docs")
    if not isinstance(gold, list):
        raise _Bad(f"column {name} must be an array, got {_json_type(gold)}")
    if not gold:
        return []  # no gold documents: the retrieval metrics do not apply to this prompt

    def doc_id(value: Any, where: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int) or (isinstance(value, str) and
                                                                           not value.strip()):
            raise _Bad(f"column {where} must be a document id (a non-empty string), got "
                       f"{_json_type(value) if not isinstance(value, str) else 'an empty string'}")
        return str(value)

    shape = ("one list of ids per question, e.g. [[\"d1\"], [\"d2\", \"d3\"]], or one id per question, "
             "e.g. [\"d1\", \"d2\"]")
    if all(isinstance(g, list) for g in gold):
        if len(gold) != n_questions:
            raise _Bad(f"column {name} has {len(gold)} lists for {n_questions} questions: give {shape}")
        return [[doc_id(d, f"{name}[{i}][{j}]") for j, d in enumerate(g)] for i, g in enumerate(gold)]
    if any(isinstance(g, list) for g in gold):
        raise _Bad(f"column {name} mixes ids and lists of ids: give {shape}")
    if len(gold) != n_questions:
        raise _Bad(f"column {name} has {len(gold)} ids for {n_questions} questions: give {shape}")
    return [[doc_id(d, f"{name}[{i}]")] for i, d in enumerate(gold)]


def _passthrough(view: _View, out: dict) -> None:
    """Optional ``id`` (any schema): a string or integer, kept so results can be traced back to rows."""
    value = view.get("id", required=False)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Bad(f"column {view.name('id')} must be a string or integer, got {_json_type(value)}")
    out["id"] = value


def _messages(view: _View) -> list[dict[str, str]]:
    msgs = view.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _Bad(f"column {view.name('messages')} must be a non-empty array of {{role, content}} objects, "
                   f"got {'an empty array' if isinstance(msgs, list) else _json_type(msgs)}")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise _Bad(f"messages[{i}] must be an object with 'role' and 'content', got {_json_type(m)}")
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or role not in ROLES:
            shown = repr(role)[:40] if isinstance(role, str) else _json_type(role)
            raise _Bad(f"messages[{i}] has role {shown}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise _Bad(f"messages[{i}] ({role}) content must be a string, got {_json_type(content)}")
        out.append({"role": role, "content": _check_text(content, f"messages[{i}] ({role}) content")})
    if not any(m["role"] == "user" for m in out):
        raise _Bad("messages have no user turn")
    if out[-1]["role"] != "assistant":
        raise _Bad(f"the last message is from the {out[-1]['role']}; it must be the assistant's answer to train on")
    return out


def _normalise(view: _View, schema: str, max_chars: int | None) -> dict:
    """One record in its canonical shape, or ``_Bad`` naming the first problem."""
    out: dict[str, Any] = {}
    if schema == "prompt_completion":
        out["prompt"] = _text(view, "prompt")
        out["completion"] = _text(view, "completion")
        prompt_len = len(out["prompt"])
    elif schema == "messages":
        out["messages"] = _messages(view)
        prompt_len = sum(len(m["content"]) for m in out["messages"][:-1])
    elif schema == "text":
        out["text"] = _text(view, "text")
        prompt_len = 0  # raw text has no prompt: every token is trained on
    else:
        out["scenario"] = _text(view, "scenario")
        out["questions"] = _text_list(view, "questions")
        out["summary"] = _text(view, "summary")
        out["answers"] = _text_list(view, "answers")
        if len(out["questions"]) != len(out["answers"]):
            raise _Bad(f"{len(out['questions'])} questions but {len(out['answers'])} answers; they must pair up")
        new_words = _text_list(view, "new_words", required=False)
        if new_words is not None:
            out["new_words"] = new_words
        gold = _gold_docs(view, len(out["questions"]))
        if gold is not None:
            out["gold_docs"] = gold
        prompt_len = len(out["scenario"]) + sum(map(len, out["questions"]))
    _passthrough(view, out)
    if max_chars is not None and prompt_len > max_chars:
        raise _Bad(f"prompt is {prompt_len} chars, longer than the context allows (max_chars={max_chars})")
    return out


def _detect(view: _View) -> str:
    """Schema from the keys present after column mapping; ``_Bad`` when no schema's columns are there."""
    if view.has("messages"):
        return "messages"
    if any(view.has(k) for k in ("scenario", "questions", "answers", "summary")):
        return "clinical"
    if view.has("prompt") or view.has("completion"):
        return "prompt_completion"
    if view.has("text"):
        return "text"
    raise _Bad("cannot tell the schema: expected 'prompt'+'completion', 'messages', "
               "'scenario'+'questions'+'summary'+'answers', or 'text' (map other names with columns=); "
               + view.keys())


def _check_args(schema: str, columns: dict | None, max_chars: int | None) -> dict[str, str]:
    """Configuration mistakes are UserErrors (not about any line of the file) caught before reading."""
    if schema not in ("auto", *SCHEMAS):
        raise UserError(f"unknown data schema {schema!r} (use auto, {', '.join(SCHEMAS)})")
    columns = dict(columns or {})
    for key, src in columns.items():
        if key not in CANONICAL:
            raise UserError(f"columns: unknown canonical name {key!r} (known: {', '.join(sorted(CANONICAL))})")
        if not isinstance(src, str) or not src:
            raise UserError(f"columns: {key!r} must map to a column name (a string), got {src!r}")
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
        raise UserError(f"max_chars must be a positive integer, got {max_chars!r}")
    return columns


# ----------------------------------------------------------------------------------------------------- API


def _txt_rows(path: Path, data: bytes, unit: str) -> Iterator[Row]:
    """Documents of a raw ``.txt`` file as ``{"text": ...}`` rows, numbered by the line where each starts.

    ``line``: every non-blank line (datasets' ``text`` loader default); ``paragraph``: runs of non-blank lines
    separated by blank lines; ``document``: the whole file. Blank lines are separators, never empty documents.
    """
    lines = decode_utf8(data, str(path)).split("\n")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    if unit == "document":
        first = next((n for n, ln in enumerate(lines, 1) if ln.strip()), None)
        if first is not None:
            yield first, {"text": "\n".join(lines[first - 1 :]).rstrip()}, None
        return
    block: list[str] = []
    start = 0
    for n, ln in enumerate([*lines, ""], 1):
        if ln.strip() and unit == "line":
            yield n, {"text": ln}, None
        elif ln.strip():
            start = start or n
            block.append(ln)
        elif block:
            yield start, {"text": "\n".join(block)}, None
            block, start = [], 0


#: one reader a file kind: (path, the file's bytes or None) -> rows ``(line, value, problem)``
READERS: dict[str, Callable[[Path, bytes | None], Iterator[Row]]] = {
    ".jsonl": _json_rows, ".json": _json_rows, ".csv": _csv_rows, ".parquet": lambda path, _: _parquet_rows(path),
}
assert set(READERS) == set(SUFFIXES)


def load_records(path: str | Path, *, schema: str | None = "auto", columns: dict | None = None,
                 skip_bad_rows: bool = False, max_chars: int | None = None, text_unit: str = "line",
                 split: str = "train", data_files: Any = None) -> LoadResult:
    """Every record of ``path`` in its canonical schema, or a one-line DataError naming file, line and problem.

    ``columns`` maps canonical names to the file's (``{"prompt": "Question"}``); ``schema="auto"`` picks the
    schema from the first record whose keys match one. With ``skip_bad_rows`` bad records are skipped, logged and
    listed in ``skipped`` as ``(line, reason)``; structural damage (a broken JSON array, unreadable Parquet) and
    an empty result still raise. A ``.txt`` file is raw text (schema ``text``), cut into documents by
    ``text_unit`` (see ``TEXT_UNITS``). A Hub dataset or a folder of data files is read with
    ``datasets.load_dataset`` (``data_files`` passed on), its ``split`` (train | val | test) picked by name.
    """
    schema = schema or "auto"  # Hydra's ``schema: null`` means "detect it"
    mapping = _check_args(schema, columns, max_chars)
    source = str(path)  # Path() would fold hf:// into hf:/
    path = Path(path)
    suffix = path.suffix.lower()
    data: bytes | None = None
    hub_sha: str | None = None
    if load_dataset_source(source):  # a Hub dataset, or a folder of data files / a loading script
        loaded, hub_sha = _load_dataset_rows(source, split, data_files)
        rows: Iterator[Row] = ((i, row, None) for i, row in enumerate(loaded, 1))
        suffix = ""  # rows of named columns, whatever the files were
    elif not path.exists():
        raise DataError(str(path), None, "file not found")
    elif path.is_dir():
        rows = _dataset_rows(path)
    else:
        check_regular(path, "data")  # FIFOs and devices would block or never end; huge files would fill memory
    if hub_sha is not None or path.is_dir():
        pass
    elif suffix == ".txt":
        if text_unit not in TEXT_UNITS:
            raise UserError(f"text_unit={text_unit!r}: use one of {', '.join(TEXT_UNITS)}")
        if schema not in ("auto", "text"):
            raise UserError(f"{path}: a .txt file is raw text (schema text), not {schema}")
        schema = "text"
        data = read_bytes(path, "data")
        rows = _txt_rows(path, data, text_unit)
    elif suffix not in SUFFIXES:
        raise DataError(str(path), None, f"unsupported file type {path.suffix or '(no extension)'!r} "
                                         f"(supported: {_SUPPORTED}, or .txt for raw text)")
    else:
        rows, data = _file_rows(path, suffix)

    records: list[dict] = []
    skipped: list[tuple[int, str]] = []
    for line, row, problem in rows:
        if problem is None:
            if not isinstance(row, dict):
                problem = f"expected a JSON object, got {_json_type(row)}"
            else:
                view = _View(row, mapping if suffix != ".txt" or path.is_dir() else {},  # .txt rows are {"text"}
                             from_csv=suffix == ".csv" and not path.is_dir())
                try:
                    if schema == "auto":
                        found = _detect(view)
                        record = _normalise(view, found, max_chars)
                        schema = found  # fixed by the first valid record; later rows must match it
                    else:
                        record = _normalise(view, schema, max_chars)
                    records.append(record)
                    continue
                except _Bad as err:
                    problem = str(err)
        if not skip_bad_rows:
            raise DataError(source, line, problem)
        skipped.append((line, problem))
        log.info("%s:%d: skipped: %s", source, line, problem)
    if skipped:
        lines = ", ".join(str(n) for n, _ in skipped[:20]) + (", ..." if len(skipped) > 20 else "")
        log.warning("%s: skipped %d bad row(s) (lines %s)", source, len(skipped), lines)
    if not records:
        raise DataError(source, None, "no records" + (f" ({len(skipped)} bad rows skipped)" if skipped else ""))
    return LoadResult(records=records, schema=schema, path=source,
                      sha256=hub_sha if hub_sha is not None else _sha256(path, data), skipped=skipped)


def iter_rows(path: str | Path) -> Iterator[Row]:
    """Raw rows of any supported file, ``(line, value, problem)``, with the same checks as ``load_records``.

    For readers that want every row's values without a schema (``qwenft.data.text`` for word discovery and
    held-out text): regular files only, size-bounded, strict UTF-8, duplicate JSON keys refused. CSV values are
    strings; JSON values are whatever the line holds.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), None, "file not found")
    if path.is_dir():
        return _dataset_rows(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(str(path), None, f"unsupported file type {path.suffix or '(no extension)'!r} "
                                         f"(supported: {_SUPPORTED})")
    return _file_rows(path, suffix)[0]


def _file_rows(path: Path, suffix: str) -> tuple[Iterator[Row], bytes | None]:
    """The rows of a data file by its kind (``READERS``), and the bytes read (None where the reader opens the file
    itself: Parquet); bounded, FIFO-refusing reads either way."""
    reader = READERS[suffix]
    if suffix == ".parquet":
        check_regular(path, "data")
        return reader(path, None), None
    data = read_bytes(path, "data")
    return reader(path, data), data
