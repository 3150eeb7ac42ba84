"""The closed-loop table: every evaluation under a folder, each arm's paired difference to ``untrained``, and
each extension arm's to ``noext_decomposition`` (the same training without new words).

    python -m experiments.clinical_eval_report experiments/results/closed_loop > table.md

Layout read: ``<root>/<world>/<arm>/{metrics.json,predictions.jsonl}`` as written by ``qwenft evaluate``
(``experiments/clinical_eval.sh loop``). Arms of one world are evaluated on the same prompts, so the difference
to the untrained model is paired prompt by prompt (``qwenft.metrics.bootstrap.paired_difference``).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from qwenft.metrics.bootstrap import paired_difference

#: The arms others are paired with, in order: the untrained model (or the base template), then the fine-tuned arm
#: without extension -- the question "does adding the words help" is each ``ext_*`` arm minus that one.
BASELINES = ("untrained", "instruct_false", "noext_decomposition")

METRICS = ("answer_rougeL", "answer_f1", "hit_at_k", "new_term_recall", "diagnosis_match", "format_valid")


def _scores(run: Path) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """(strategy, budget) -> prompt id -> scores."""
    out: dict = defaultdict(dict)
    for line in (run / "predictions.jsonl").read_text().splitlines():
        p = json.loads(line)
        out[(p["strategy"], p["budget"])][str(p["id"])] = p["scores"]
    return out


def _cell(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    f = "+.3f" if signed else ".3f"
    return f"{mean:{f}}" + ("" if math.isnan(lo) else f" [{lo:{f}}, {hi:{f}}]")


def _paired(runs: dict[str, Path], base: str, shown: list[str]) -> list[str]:
    """Each other arm minus ``base`` on the prompts both answered, by (strategy, budget)."""
    ref = _scores(runs[base])
    lines = []
    for name, run in runs.items():
        if name == base or not _compared(name, base):
            continue
        for key, by_id in _scores(run).items():
            if key not in ref:
                continue
            ids = sorted(set(by_id) & set(ref[key]))
            cells = []
            for m in shown:
                d = paired_difference([by_id[i].get(m, math.nan) for i in ids],
                                      [ref[key][i].get(m, math.nan) for i in ids])
                cells.append(_cell(d.mean, d.lo, d.hi, signed=True) + ("*" if d.excludes_zero() else ""))
            lines.append(f"| {name} | {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    if not lines:  # no arm to compare with this one (a world trained without extension arms)
        return []
    return ["", f"Paired difference to `{base}` (same prompts), mean [95% CI]:", "",
            "| arm | strategy | budget | " + " | ".join(shown) + " |", "|---|---|---|" + "---:|" * len(shown), *lines]


def _compared(arm: str, base: str) -> bool:
    """Every arm is compared with the untrained model; only the extension arms with the arm without one."""
    return base != "noext_decomposition" or arm.startswith("ext_")


def report(root: Path) -> str:
    lines = []
    for world in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = {p.name: p for p in sorted(world.iterdir()) if (p / "metrics.json").is_file()}
        if not runs:
            continue
        rows = {name: json.loads((p / "metrics.json").read_text())["rows"] for name, p in runs.items()}
        shown = [m for m in METRICS if any(not math.isnan(r.get(m, math.nan)) for rs in rows.values() for r in rs)]
        lines += [f"## {world.name}", "", "| arm | strategy | budget | n | " + " | ".join(shown) + " |",
                  "|---|---|---|---:|" + "---:|" * len(shown)]
        for name, rs in rows.items():
            for r in rs:
                if r.get("same_as"):
                    continue
                cells = [_cell(r[m], *r["ci"][m]) for m in shown]
                lines.append(f"| {name} | {r['strategy']} | {r['budget']} | {r['n_prompts']} | "
                             + " | ".join(cells) + " |")
        for base in [n for n in BASELINES if n in runs]:
            lines += _paired(runs, base, shown)
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(report(Path(sys.argv[1])), end="")
