"""``qwenft report runs=[DIR,...] group_by=[...] metrics=[...] out=DIR``: run dirs -> tables and plots."""

from __future__ import annotations

from omegaconf import DictConfig

from qwenft.report import report


def run(cfg: DictConfig) -> str:
    runs = [cfg.runs] if isinstance(cfg.runs, str) else list(cfg.runs)  # runs=DIR: one folder, not its letters
    md = report(runs, list(cfg.group_by), list(cfg.metrics), cfg.out,
                history_metric=cfg.history_metric, digits=cfg.digits, plots=cfg.plots)
    print(md)
    print(f"written to {cfg.out}: table.md, table.tex, table.json" + (", PNG plots" if cfg.plots else ""))
    return md
