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

import json
from dataclasses import dataclass, field
from pathlib import Path

from qwenft.atomic import atomic_write_text
from qwenft.data.io import file_sha256, read_jsonl
from qwenft.errors import DataError, UserError

__all__ = ["EvalData", "field_text", "file_sha256", "read_jsonl", "require_path", "write_kb", "write_records"]


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
