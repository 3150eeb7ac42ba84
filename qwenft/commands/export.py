"""``qwenft export RUN_DIR [checkpoint=best|last]``: adapter, merged model, tokenizer and model card of a run."""

from __future__ import annotations

from omegaconf import DictConfig

from qwenft.train.loop import export_run


def run(cfg: DictConfig) -> dict[str, str]:
    out = export_run(cfg.run_dir, str(cfg.checkpoint), cfg.get("push_to_hub"))
    for name, path in out.items():
        print(f"{name}: {path}")
    return out
