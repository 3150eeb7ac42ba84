"""``qwenft report``: run directories -> paper-style tables (markdown, LaTeX) and plots, without W&B.

A run directory is anything holding ``metrics.json`` (final metrics, flat) next to Hydra's ``.hydra/`` (the
composed config and, in ``hydra.yaml``, which option each config group used). Grouping keys are either config
groups (``model``, ``tokenizer``: the option's name) or dotted config keys (``tokenizer.init``, ``peft.r``).
Each cell is mean ± sample standard deviation over the runs of the group (seeds), with n.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from qwenft.atomic import atomic_write_text
from qwenft.errors import UserError
from qwenft.rules import BOOL, OPT_TEXT, TEXT, TEXTS, Int, Rule, setting, text_or_texts


@dataclass(kw_only=True)
class ReportSchema:
    """``conf/report.yaml``: ``qwenft report``."""

    runs: Any = setting(rule=Rule("any", check=lambda v: text_or_texts(v) and len(v) > 0,
                                  text="a run folder or a list"),
                        doc="run directories, or folders searched for metrics.json")
    group_by: list[str] = setting(rule=TEXTS, doc="config groups or dotted keys that make an arm")
    metrics: list[str] = setting(rule=Rule("strlist", nonempty=True), doc="the table's columns")
    history_metric: str | None = setting(rule=OPT_TEXT, doc="the curve drawn per arm (null: none)")
    digits: int = setting(3, Int(0, 12), "digits in the tables")
    plots: bool = setting(True, BOOL, "draw the curves")
    out: str = setting(rule=TEXT, doc="folder for the tables and plots")


@dataclass
class Run:
    path: Path
    metrics: dict[str, float]
    config: dict
    choices: dict[str, str]
    history: list[dict[str, float]] = field(default_factory=list)

    def key(self, name: str) -> str:
        if name in self.choices:
            return str(self.choices[name])
        node: object = self.config
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                return "—"
            node = node[part]
        return json.dumps(node) if isinstance(node, (list, dict)) else str(node)


def _read_history(run_dir: Path) -> list[dict[str, float]]:
    """Per-step metrics: ``history.jsonl`` if present, else Lightning's CSV logger ``metrics.csv``.

    A line that does not parse (a run killed mid-write) is skipped, not fatal: the curve loses one point.
    """
    hist = run_dir / "history.jsonl"
    if hist.exists():
        rows = []
        for line in hist.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append({k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        return rows
    for path in sorted(run_dir.rglob("metrics.csv")):
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            rows = []
            for row in csv.DictReader(f):
                values = {}
                for k, v in row.items():
                    try:
                        values[k] = float(v)
                    except (TypeError, ValueError):
                        continue
                rows.append(values)
            return rows
    return []


class BrokenRun(Exception):
    """A run directory that cannot be read; ``report`` names it and goes on with the others."""


def _yaml(path: Path) -> dict:
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:  # noqa: BLE001 - any YAML/OmegaConf failure makes the run unreadable
        raise BrokenRun(f"{path.name} is unreadable ({str(err).splitlines()[0][:100] if str(err) else err})") \
            from None
    if not isinstance(data, dict):
        raise BrokenRun(f"{path.name} is not a mapping")
    return data


def load_run(run_dir: Path) -> Run:
    """One run directory, or ``BrokenRun`` naming the file that cannot be read."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # truncated by a kill, hand-edited, not UTF-8
        raise BrokenRun(f"metrics.json is unreadable ({str(err).splitlines()[0][:100]})") from None
    if not isinstance(metrics, dict):
        raise BrokenRun("metrics.json does not hold an object")
    config, choices = {}, {}
    for candidate in (run_dir / ".hydra" / "config.yaml", run_dir / "config.yaml"):
        if candidate.exists():
            config = _yaml(candidate)
            break
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.exists():
        found = OmegaConf.select(OmegaConf.create(_yaml(hydra_yaml)), "hydra.runtime.choices", default=None)
        choices = dict(found) if found is not None else {}
    flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return Run(run_dir, flat, config, {k: str(v) for k, v in choices.items()}, _read_history(run_dir))


def find_runs(roots: list[str | Path], skipped: list[tuple[Path, str]] | None = None) -> list[Run]:
    """Every run under ``roots``, each once (a run reached from two roots counts once). A run that cannot be
    read is named on stderr and in ``skipped``, and left out; none readable at all is a ``UserError``."""
    runs, seen = [], set()
    skipped = skipped if skipped is not None else []
    for root in roots:
        root = Path(root)
        paths = [root] if (root / "metrics.json").exists() else sorted(p.parent for p in root.rglob("metrics.json"))
        for p in paths:
            key = p.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                runs.append(load_run(p))
            except BrokenRun as err:
                skipped.append((p, str(err)))
    if not runs:
        extra = f" ({len(skipped)} unreadable: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise UserError(f"no run directories (with metrics.json) under {', '.join(map(str, roots))}{extra}")
    for path, why in skipped:
        print(f"warning: skipping run {path}: {why}", file=sys.stderr)
    return runs


@dataclass
class Cell:
    mean: float
    std: float
    n: int

    runs: int = 0  # runs in the group; when fewer of them have this metric, the cell says over how many

    def fmt(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "—"
        return f"{self.mean:.{digits}f}" + (f" ± {self.std:.{digits}f}" if self.n > 1 else "") + \
            (f" (n={self.n})" if self.runs and self.n < self.runs else "")


def aggregate(runs: list[Run], group_by: list[str],
              metrics: list[str]) -> list[tuple[tuple[str, ...], dict[str, Cell], int]]:
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(run.key(k) for k in group_by), []).append(run)
    table = []
    for key in sorted(groups):
        members = groups[key]
        cells = {}
        for m in metrics:
            values = [r.metrics[m] for r in members if m in r.metrics and not math.isnan(r.metrics[m])]
            mean = statistics.fmean(values) if values else float("nan")
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells[m] = Cell(mean, std, len(values), len(members))
        table.append((key, cells, len(members)))
    return table


def to_markdown(table, group_by: list[str], metrics: list[str], digits: int = 3) -> str:
    head = "| " + " | ".join([*group_by, *metrics, "n"]) + " |"
    sep = "|" + "---|" * (len(group_by) + len(metrics) + 1)
    rows = ["| " + " | ".join([*key, *(cells[m].fmt(digits) for m in metrics), str(n)]) + " |"
            for key, cells, n in table]
    return "\n".join([head, sep, *rows]) + "\n"


def _tex(s: str) -> str:
    return s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def to_latex(table, group_by: list[str], metrics: list[str], digits: int = 3) -> str:
    lines = [r"\begin{tabular}{" + "l" * len(group_by) + "r" * (len(metrics) + 1) + "}", r"\toprule",
             " & ".join(_tex(c) for c in [*group_by, *metrics, "n"]) + r" \\", r"\midrule"]
    for key, cells, n in table:
        vals = [cells[m].fmt(digits).replace(" ± ", r" $\pm$ ") for m in metrics]
        lines.append(" & ".join([*(_tex(k) for k in key), *vals, str(n)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def plot(runs: list[Run], table, group_by: list[str], metrics: list[str], history_metric: str | None,
         out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    labels = [" / ".join(key) for key, _, _ in table]
    for m in metrics:
        fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(table) + 2), 3.2))
        means = [cells[m].mean for _, cells, _ in table]
        errs = [cells[m].std for _, cells, _ in table]
        ax.bar(range(len(table)), means, yerr=errs, capsize=4, color="#4C72B0")
        ax.set_xticks(range(len(table)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(m)
        fig.tight_layout()
        path = out / f"bars_{m.replace('/', '_')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if history_metric:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, _, _ in table:
            members = [r for r in runs if tuple(r.key(k) for k in group_by) == key]
            by_step: dict[float, list[float]] = {}
            for r in members:
                for row in r.history:
                    if history_metric in row and "step" in row:
                        by_step.setdefault(row["step"], []).append(row[history_metric])
            if by_step:
                steps = sorted(by_step)
                ax.plot(steps, [statistics.fmean(by_step[s]) for s in steps], marker="o", label=" / ".join(key))
        ax.set_xlabel("step")
        ax.set_ylabel(history_metric)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"curve_{history_metric.replace('/', '_')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def report(roots: list[str | Path], group_by: list[str], metrics: list[str], out: str | Path,
           history_metric: str | None = None, digits: int = 3, plots: bool = True) -> str:
    runs = find_runs(roots)
    table = aggregate(runs, group_by, metrics)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(table, group_by, metrics, digits)
    atomic_write_text(out / "table.md", md)
    atomic_write_text(out / "table.tex", to_latex(table, group_by, metrics, digits))
    atomic_write_text(out / "table.json", json.dumps(
        [{"group": dict(zip(group_by, key, strict=True)), "n": n,
          **{m: {"mean": c.mean, "std": c.std, "n": c.n} for m, c in cells.items()}} for key, cells, n in table],
        indent=2))
    if plots:
        plot(runs, table, group_by, metrics, history_metric, out)
    return md
