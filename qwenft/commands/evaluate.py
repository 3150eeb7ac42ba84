"""``qwenft evaluate [data_path=...] ["strategies=[...]"] [k=K] [out=DIR]``: strategies x budgets -> one table."""

from __future__ import annotations

import json
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.atomic import atomic_write_text
from qwenft.clinical.evaluate import evaluate, load_strategy, log_wandb, markdown_table
from qwenft.data.io import load_records
from qwenft.tokenizer.extend import read_words_file


def run(cfg: DictConfig) -> dict:
    records = load_records(cfg.data_path, schema="clinical").records
    if cfg.n_prompts:
        records = records[: int(cfg.n_prompts)]
    names = [cfg.strategies] if isinstance(cfg.strategies, str) else list(cfg.strategies)  # strategies=hyde
    budgets = [cfg.budgets] if isinstance(cfg.budgets, str) else list(cfg.budgets)
    strategies = [load_strategy(name, cfg.get("strategy")) for name in names]
    new_words = read_words_file(cfg.words_file)[0] if cfg.get("words_file") else None
    retriever = instantiate(cfg.retrieval)  # a bad knowledge base fails before the model loads
    loaded = instantiate(cfg.model)
    gen = OmegaConf.to_container(cfg.generation, resolve=True)
    rows, predictions = evaluate(records, strategies, loaded, retriever, int(cfg.k), budgets, gen, new_words)
    table = markdown_table(rows)
    out = Path(cfg.out)
    atomic_write_text(out / "table.md", table)
    atomic_write_text(out / "metrics.json", json.dumps(rows, indent=2))
    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions))
    if cfg.get("logger") and "wandb" in cfg.logger:  # other loggers: the run dir's files are the record
        log_wandb(cfg, out, rows, predictions, records)
    print(table, flush=True)
    print(f"written: {out / 'table.md'}, {out / 'metrics.json'}, {out / 'predictions.jsonl'}", flush=True)
    return {"rows": rows, "out": str(out)}
