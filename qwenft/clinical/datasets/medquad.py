"""``eval_data=medquad``: MedQuAD (Ben Abacha & Demner-Fushman, 2019) -> multi-question prompts with gold documents.

Input: MedQuAD as JSON lines (``.jsonl`` or ``.jsonl.gz``), one question-answer pair a line with ``id``,
``focus``, ``question``, ``answer`` (and optionally ``source``, ``qtype``; a pair without a focus is a document
of the knowledge base but in no prompt) -- the XML files converted one pair a
line; pairs without an answer are skipped by the conversion, not here (an empty answer is an error).

* **Prompts**: the pairs are grouped by document (``source`` + ``focus``: one MedQuAD page is about one focus).
  Each group with at least ``min_questions`` distinct questions gives one prompt of 2-4 of them
  (``min_questions``..``max_questions``), different question types first. The scenario is one line naming the
  focus ("A patient asks about Glaucoma."); it is also the reference summary, so summary ROUGE-L only says
  whether the summary names the focus.
* **Ids**: MedQuAD reuses a question id across the foci of one page; repeats get ``~2``, ``~3``... in file
  order, so each of the pairs is its own document.
* **Gold documents**: the question's own answer -- and every other pair whose answer is the same text (MedQuAD
  repeats some answers verbatim under several ids), so ``hit_at_k`` counts any copy.
* **Knowledge base**: every answer of the file, ``{id, title: focus, text: answer}``, written once under
  ``cache_dir`` (keyed by the source file's hash). Set ``kb_path`` to search another knowledge base instead (gold
  ids then only match if it uses MedQuAD's ids).
* **Reproducible by seed**: which group goes to which split, the prompt order and each prompt's questions are
  functions of ``seed`` and the group alone (a hash), not of the file order or of ``n_prompts``.
* **Splits** by focus (whatever the source), so no focus is in both: ``split=test`` (a ``test_fraction`` of the
  groups), ``train`` (the rest, e.g. for fine-tuning: ``write_records``), or ``all``.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from pathlib import Path

from qwenft.clinical.datasets import EvalData, field_text, file_sha256, read_jsonl, require_path, write_kb
from qwenft.errors import DataError, UserError

SPLITS = ("test", "train", "all")


def _unit(seed: int, *key: str) -> float:
    """A number in [0, 1) fixed by the seed and the key: the same on every machine and in every file order."""
    digest = hashlib.sha256("\x1f".join([str(seed), *key]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _same_text(text: str) -> str:
    return " ".join(text.split())


def read_pairs(path: Path) -> list[dict]:
    pairs: list[dict] = []
    seen: dict[str, int] = {}
    for n, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise DataError(str(path), n, "each line must be a JSON object with id, focus, question, answer")
        pair = {k: field_text(row, k, path, n) for k in ("question", "answer")}
        focus = row.get("focus")
        if focus is not None and not isinstance(focus, str):
            raise DataError(str(path), n, "field 'focus' must be a string")
        pair["focus"] = focus or ""  # 14 MedQuAD pairs have none: documents, never prompts
        rid = row.get("id")
        if not isinstance(rid, str | int) or isinstance(rid, bool) or not str(rid).strip():
            raise DataError(str(path), n, "field 'id' must be a non-empty string or integer")
        # MedQuAD reuses a question id for the same question about several foci of one page (2 489 ids, 6 760
        # pairs): later occurrences get ~2, ~3 ... in file order, so every pair is one document
        base = pair["id"] = str(rid)
        while pair["id"] in seen:
            seen[base] += 1
            pair["id"] = f"{base}~{seen[base]}"
        seen[pair["id"]] = 1
        pair["source"] = str(row.get("source") or "")
        pair["qtype"] = str(row.get("qtype") or "")
        pairs.append(pair)
    if not pairs:
        raise DataError(str(path), None, "no question-answer pairs")
    return pairs


def _pick(group: list[dict], seed: int, key: tuple[str, str], lo: int, hi: int) -> list[dict]:
    """2-4 distinct questions of one group, different question types first, chosen by the seed."""
    rng = random.Random(_unit(seed, "pick", *key))
    ordered = sorted(group, key=lambda p: (_same_text(p["question"]).lower(), _same_text(p["answer"])))
    rows = list({_same_text(p["question"]).lower(): p for p in reversed(ordered)}.values())[::-1]
    rng.shuffle(rows)  # from an order fixed by the content: the file order does not matter
    by_type = list({p["qtype"]: p for p in reversed(rows)}.values())  # first row of each type
    ordered = by_type + [p for p in rows if p not in by_type]
    return ordered[: rng.randint(lo, min(hi, len(ordered)))]


def build(pairs: list[dict], seed: int = 0, min_questions: int = 2, max_questions: int = 4,
          split: str = "test", test_fraction: float = 0.5) -> list[dict]:
    """Clinical records from MedQuAD pairs (module docstring), in a seeded order."""
    if split not in SPLITS:
        raise UserError(f"eval_data.split={split!r}: use one of {', '.join(SPLITS)}")
    if not 1 <= min_questions <= max_questions:
        raise UserError(f"eval_data.min_questions={min_questions}, max_questions={max_questions}: "
                        "need 1 <= min_questions <= max_questions")
    if not 0 <= test_fraction <= 1:
        raise UserError(f"eval_data.test_fraction={test_fraction}: must be between 0 and 1")
    same: dict[str, list[str]] = defaultdict(list)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for p in pairs:
        same[_same_text(p["answer"])].append(p["id"])
        if p["focus"].strip():
            groups[(p["source"], p["focus"])].append(p)
    records = []
    for key, group in groups.items():
        in_test = _unit(seed, "split", " ".join(key[1].lower().split())) < test_fraction  # by focus, any source
        if split != "all" and in_test != (split == "test"):
            continue
        if len({_same_text(p["question"]).lower() for p in group}) < min_questions:
            continue
        chosen = _pick(group, seed, key, min_questions, max_questions)
        focus = " ".join(key[1].split())
        scenario = f"A patient asks about {focus}."
        records.append({
            "id": "medquad-" + "+".join(p["id"] for p in chosen),
            "scenario": scenario,
            "questions": [_same_text(re.sub(r"\s+\?$", "?", p["question"])) for p in chosen],
            "summary": scenario,
            "answers": [p["answer"].strip() for p in chosen],
            "gold_docs": [sorted(same[_same_text(p["answer"])]) for p in chosen],
            "focus": focus,
            "_order": _unit(seed, "order", *key),
        })
    records.sort(key=lambda r: r.pop("_order"))
    return records


def kb_docs(pairs: list[dict]) -> list[dict]:
    """Every answer as a knowledge-base document: the page's focus as title, the answer as text."""
    return [{"id": p["id"], "title": " ".join(p["focus"].split()), "text": p["answer"].strip()} for p in pairs]


def load(path: str | None, kb_path: str | None = None, cache_dir: str = "~/.cache/qwenft/eval_data",
         seed: int = 0, min_questions: int = 2, max_questions: int = 4, split: str = "test",
         test_fraction: float = 0.5) -> EvalData:
    src = require_path(path, "eval_data.path", "MedQuAD as JSON lines (id, focus, question, answer[, source, qtype])")
    pairs = read_pairs(src)
    sha = file_sha256(src)
    records = build(pairs, seed, min_questions, max_questions, split, test_fraction)
    if not records:
        raise UserError(f"eval_data: no MedQuAD group of {src} has {min_questions}+ questions in split={split}")
    notes = [f"MedQuAD {src.name} (sha256 {sha[:12]}): {len(pairs)} pairs -> {len(records)} prompts "
             f"(split={split}, seed={seed}, {min_questions}-{max_questions} questions sharing a focus)"]
    if kb_path:
        kb = Path(str(kb_path)).expanduser()
        notes.append(f"knowledge base: {kb} (given; gold ids are MedQuAD ids)")
    else:
        kb = write_kb(kb_docs(pairs), Path(cache_dir).expanduser() / f"medquad-{sha[:16]}.kb.jsonl")
        notes.append(f"knowledge base: all {len(pairs)} answers (title = focus)")
    return EvalData("medquad", records, str(src), sha, kb_path=str(kb), notes=notes)
