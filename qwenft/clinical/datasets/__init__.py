"""Real evaluation data sets -> clinical records for ``qwenft evaluate`` (``conf/eval_data/*.yaml``).

Each module turns files the user supplies (qwenft ships none of them) into the clinical record schema of
``qwenft evaluate`` -- ``{id, scenario, questions, summary, answers, gold_docs?, new_words?}`` -- plus, where
the data set has them, ``targets`` (its own scoring: diagnosis match, K-QA statements, multiple choice; see
``qwenft.metrics.clinical``) and a knowledge base to retrieve from:

* :mod:`.demo` -- the bundled synthetic set (or any clinical JSONL/CSV/Parquet: ``data_path=``);
* :mod:`.medquad` -- MedQuAD: prompts of 2-4 real questions sharing a focus, gold document per question, all
  answers as the knowledge base;
* :mod:`.agentclinic` -- AgentClinic OSCE cases: a scenario written from the case, the diagnosis question
  scored by diagnosis match;
* :mod:`.kqa` -- K-QA: patient questions, scored against the physicians' must-have statements;
* :mod:`.mirage` -- MIRAGE multiple-choice questions (MedQA, MedMCQA, PubMedQA*, BioASQ, MMLU-med), scored by
  accuracy; MedRAG corpora ``{id, title, content}`` load as knowledge bases (``qwenft.retrieval.kb``).

Every builder returns an :class:`EvalData`; records come in a fixed, seeded order so ``n_prompts=N`` takes the
same N prompts on every machine. Problems are one-line ``UserError``/``DataError``s naming the config key or the
file and line, raised before any model loads.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwenft.atomic import atomic_write_text
from qwenft.errors import DataError, UserError


@dataclass
class EvalData:
    """Records to evaluate, and what goes with them.

    ``kb_path``: the knowledge base that belongs to the data (MedQuAD's answers), or the one the user gave for
    it; None means "use the retrieval config's". ``needs_kb``: the data has no knowledge base of its own, so
    evaluating it with retrieval needs ``eval_data.kb_path`` -- a synthetic demo KB would be meaningless.
    ``notes``: how the data were built and what the scores mean, written next to the table.
    """

    name: str
    records: list[dict]
    source: str
    sha256: str
    kb_path: str | None = None
    needs_kb: bool = False
    notes: list[str] = field(default_factory=list)


def require_path(path: str | None, key: str, what: str) -> Path:
    """The file a config key names, or one line saying which key to set and to what."""
    if path is None or not str(path).strip():
        raise UserError(f"{key} is not set: point it at {what} (e.g. {key}=/data/file)")
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise DataError(str(p), None, f"not found ({key})")
    return p


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
    for f in files:
        with f.open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for each non-blank line of a JSONL file, ``.gz`` or not; a malformed line is
    a DataError naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(str(path), n, f"malformed JSON: {err.msg} (column {err.colno})") from None
    except UnicodeDecodeError as err:
        raise DataError(str(path), None, f"not UTF-8 (byte {err.start})") from None
    except (OSError, EOFError) as err:  # e.g. a truncated or non-gzip .gz
        raise DataError(str(path), None, f"cannot read: {err}") from None


def field_text(row: dict, key: str, path: Path, line: int) -> str:
    """A required non-empty string field of a source row."""
    value = row.get(key) if isinstance(row, dict) else None
    if not isinstance(value, str) or not value.strip():
        raise DataError(str(path), line, f"field {key!r} must be a non-empty string")
    return value


def write_kb(docs: list[dict], dest: Path) -> Path:
    """Write a JSONL knowledge base atomically, unless the same content is already there (indexes are cached by
    the file's sha256, so an unchanged file keeps its index)."""
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    if not (dest.is_file() and dest.read_text(encoding="utf-8") == text):
        atomic_write_text(dest, text)
    return dest


def write_records(records: list[dict], dest: str | Path) -> Path:
    """Records as clinical JSONL (e.g. a MedQuAD training split for ``qwenft train data.train_path=``)."""
    dest = Path(dest)
    atomic_write_text(dest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return dest
