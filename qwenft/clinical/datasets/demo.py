"""``eval_data=demo``: a clinical JSONL/CSV/Parquet file (default: the bundled synthetic test split).

This is ``qwenft evaluate data_path=...`` as it always was: records validated by ``qwenft.data.io`` (file:line
errors), retrieval from the retrieval config's knowledge base (``retrieval.kb_path``).
"""

from __future__ import annotations

from pathlib import Path

from qwenft.clinical.datasets import EvalData
from qwenft.data.io import load_records
from qwenft.errors import UserError


def load(path: str | None) -> EvalData:
    if not path:
        raise UserError("data_path is not set: a clinical JSONL with scenario, questions, summary, answers")
    loaded = load_records(path, schema="clinical")
    return EvalData("demo", loaded.records, str(Path(loaded.path)), loaded.sha256)
