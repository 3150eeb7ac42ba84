"""``qwenft evaluate [eval_data=demo|medquad|agentclinic|kqa|mirage] ["strategies=[...]"] [k=K] [out=DIR]``:
strategies x budgets -> one table of means with 95 % intervals and paired differences (resumable in ``out``)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.clinical.engines import cache_settings, open_engine
from qwenft.clinical.evaluate import (
    PredictionCache,
    build_eval_data,
    build_strategy,
    check_retrieval_run,
    digest,
    evaluate,
    has_gold,
    load_strategy,
    log_wandb,
    needs_model_to_retrieve,
    retrieval_config,
    write_results,
)
from qwenft.errors import UserError
from qwenft.tokenizer.extend import read_words_file


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)  # strategies=hyde


def run(cfg: DictConfig) -> dict:
    data = build_eval_data(cfg.eval_data)  # a bad data file fails before anything loads
    records = data.records[: int(cfg.n_prompts)] if cfg.n_prompts else data.records
    strategies = [load_strategy(name, cfg.get("strategy")) for name in _as_list(cfg.strategies)]
    if cfg.get("strategy") is not None:
        build_strategy(cfg.strategy)  # its overrides (strategy.scope=...) are checked even when it is not listed
    answers = bool(cfg.get("answers", True))
    budgets = _as_list(cfg.budgets)
    new_words = read_words_file(cfg.words_file)[0] if cfg.get("words_file") else None
    retrieval_cfg = retrieval_config(cfg.retrieval, data)
    if cfg.retrieval_only and "kb_path" in retrieval_cfg and not has_gold(records):  # before an index is built
        raise UserError(f"retrieval_only=true scores retrieval against gold_docs, and no record of {data.source} "
                        "has any: nothing to score (add gold_docs, or drop retrieval_only to score the answers)")
    retriever = instantiate(retrieval_cfg)  # a bad knowledge base fails before the model loads
    gen = OmegaConf.to_container(cfg.generation, resolve=True)
    if not answers:
        check_retrieval_run(retriever, int(cfg.get("rewrite_batch", 32)))  # before the model loads
    # answers=false needs the model only to write queries; retrieval_only=true never
    needs_model = not cfg.retrieval_only and (answers or any(needs_model_to_retrieve(s) for s in strategies))
    engine = open_engine(gen, cfg.model) if needs_model else None  # generation.engine: hf or vllm
    out = Path(cfg.out)
    settings = digest({"model": None if engine is None else OmegaConf.to_container(cfg.model, resolve=True),
                       "retrieval": OmegaConf.to_container(retrieval_cfg, resolve=True),
                       "kb_sha256": getattr(getattr(retriever, "kb", None), "sha256", None),
                       "generation": None if engine is None else cache_settings(gen, engine), "k": int(cfg.k),
                       "retrieval_only": bool(cfg.retrieval_only), "new_words": new_words,
                       **({} if answers else {"answers": False})})  # keys of runs before answers= unchanged
    boot = cfg.bootstrap
    with engine or contextlib.nullcontext():  # a vLLM server stops here
        result = evaluate(records, strategies, engine, retriever, int(cfg.k), budgets, gen, new_words,
                          reference=cfg.reference_strategy, cache=PredictionCache(out / "predictions.cache.jsonl"),
                          settings=settings, retrieval_only=bool(cfg.retrieval_only), progress=bool(cfg.progress),
                          n_resamples=int(boot.n_resamples), confidence=float(boot.confidence), seed=int(boot.seed),
                          answers=answers, rewrite_batch=int(cfg.get("rewrite_batch", 32)))
    table = write_results(out, data, result, int(cfg.k), OmegaConf.to_container(boot, resolve=True))
    if cfg.get("logger") and "wandb" in cfg.logger:  # other loggers: the run dir's files are the record
        log_wandb(cfg, out, result, records)
    print(table, flush=True)
    resumed = f" ({result.resumed} predictions reused from predictions.cache.jsonl)" if result.resumed else ""
    print(f"written: {out / 'table.md'}, {out / 'metrics.json'}, {out / 'predictions.jsonl'}{resumed}", flush=True)
    return {"rows": result.rows, "differences": result.differences, "out": str(out)}
