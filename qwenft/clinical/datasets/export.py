"""Write a data set's records as clinical JSONL, e.g. MedQuAD's training split for ``qwenft train``:

    python -m qwenft.clinical.datasets.export eval_data=medquad eval_data.path=/data/medquad.jsonl.gz \\
        eval_data.split=train out=medquad_train.jsonl [n=2000] [skip=0]

The overrides are those of ``qwenft evaluate`` (the ``eval_data`` group), so the split, the seed and the prompt
construction are exactly the ones the evaluation uses -- the closed loop trains on one split and is evaluated on
the other. Only the clinical schema's columns are written (``qwenft.data.io``): scenario, questions, summary,
answers, id, gold_docs, new_words. ``skip=S n=N`` writes records S..S+N-1 of the data set's seeded order (a
validation slice next to a training slice).
"""

from __future__ import annotations

import sys

from qwenft.clinical.datasets import write_records
from qwenft.data.io import FIELDS
from qwenft.errors import UserError


def export(overrides: list[str]) -> tuple[str, int]:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from qwenft.config import compose

    out = next((o.split("=", 1)[1] for o in overrides if o.startswith("out=")), None)
    n = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("n=")), None)
    skip = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("skip=")), 0)
    if not out:
        raise UserError("out is not set: the JSONL file to write (out=FILE)")
    rest = [o for o in overrides if not o.startswith(("out=", "n=", "skip="))]
    cfg = compose("evaluate", [*rest, "out=."])
    try:
        data = instantiate(cfg.eval_data, _convert_="all")
    except InstantiationException as err:
        raise (err.__cause__ if isinstance(err.__cause__, UserError) else err) from None
    chosen = data.records[skip:] if n is None else data.records[skip: skip + n]
    records = [{k: r[k] for k in FIELDS["clinical"] if k in r} for r in chosen]
    if any(not str(r.get("summary") or "").strip() for r in records):
        raise UserError(f"eval_data={data.name} has no reference summaries: its records cannot be training data")
    write_records(records, out)
    return out, len(records)


def main(argv: list[str] | None = None) -> int:
    try:
        out, n = export(list(sys.argv[1:] if argv is None else argv))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"written: {out} ({n} records)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
