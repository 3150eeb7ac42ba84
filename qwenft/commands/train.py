"""``qwenft train [experiment=...] [model=...] [key=value ...]``: one run (or a sweep with ``-m``)."""

from __future__ import annotations

import json

from omegaconf import DictConfig

from qwenft.train.loop import train


def run(cfg: DictConfig) -> float | None:
    """Train; print the final metrics; return the sweep objective (``objective`` key of the metrics) for Optuna."""
    metrics = train(cfg)
    print(json.dumps({k: v for k, v in metrics.items() if k != "outputs"}, indent=2))
    return metrics.get(cfg.objective)
