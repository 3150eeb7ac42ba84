"""A clinical data set x strategies -> ONE metrics table (markdown + JSON), W&B optional.

    qwenft evaluate model=offline n_prompts=12 "strategies=[whole_prompt,decomposition,multi_query]" k=2

Strategies are compared at equal retrieval budget both ways (see ``strategies.py``): ``per_question`` (k
documents per question; the whole-prompt baseline gets k) and ``per_prompt`` (k x n per prompt of n questions;
the baseline reads them all, a per-question strategy k for each question). A per-question strategy reads the
same documents under both budgets, so it is run once and its row repeated (``same_as``); without a retriever
every strategy is run once. Prompts and generations stay in the run directory (``predictions.jsonl``); they go
to W&B only with ``log_text=true`` -- by default W&B gets the numbers and the config.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.clinical.parse import Parsed
from qwenft.clinical.strategies import BUDGETS, Strategy, answer
from qwenft.config import conf_dir
from qwenft.errors import UserError
from qwenft.metrics.clinical import aggregate, score_prediction

log = logging.getLogger(__name__)

METRICS = ("summary_rougeL", "answer_rougeL", "answer_f1", "coverage", "format_valid", "recall_at_k", "mrr",
           "new_term_recall")
COSTS = ("queries_per_prompt", "docs_per_prompt", "generate_calls", "sec_per_prompt")
HEADERS = {"summary_rougeL": "summary R-L", "answer_rougeL": "answer R-L", "answer_f1": "answer F1",
           "coverage": "coverage", "format_valid": "format ok", "recall_at_k": "recall@k", "mrr": "MRR",
           "new_term_recall": "new-term recall", "queries_per_prompt": "queries", "docs_per_prompt": "docs read",
           "generate_calls": "gen calls", "sec_per_prompt": "s/prompt"}


def load_strategy(name: str, selected: DictConfig | None = None) -> Strategy:
    """``conf/strategy/<name>.yaml`` -- or the composed ``decomposition`` group when it is that one, so
    overrides such as ``strategy.n_queries=5`` apply to it."""
    if selected is not None and selected.get("name") == name:
        return instantiate(selected)
    path = conf_dir() / "strategy" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise UserError(f"strategies: unknown strategy {name!r} (known: {', '.join(known)})")
    return instantiate(OmegaConf.load(path))


def _costs(trace: dict, whole_prompt: bool) -> dict[str, float]:
    """What a prompt cost: retrieval queries issued, documents put in contexts, generate calls."""
    queries = trace["queries"][:1] if whole_prompt else trace["queries"]
    docs = trace["retrieved"][:1] if whole_prompt else trace["retrieved"]
    return {"queries_per_prompt": float(sum(map(len, queries))) if trace["retrieval"] else 0.0,
            "docs_per_prompt": float(sum(map(len, docs))),
            "generate_calls": float(trace["generate_calls"])}


def evaluate(records: list[dict], strategies: list[Strategy], loaded, retriever, k: int, budgets: list[str],
             gen: dict, new_words: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """(one row per strategy x budget, one prediction per prompt x strategy x budget actually run)."""
    for b in budgets:
        if b not in BUDGETS:
            raise UserError(f"budgets: {b!r} is not one of {', '.join(BUDGETS)}")
    rows, predictions = [], []
    for strategy in strategies:
        first_budget = None
        for budget in budgets:
            if first_budget is not None and (retriever is None or not strategy.whole_prompt):
                rows.append({**next(r for r in rows if r["strategy"] == strategy.name and r["budget"] == first_budget),
                             "budget": budget, "same_as": first_budget})
                continue
            first_budget = first_budget or budget
            scores = []
            for rec in records:
                start = time.perf_counter()
                resp, trace = answer(Parsed(rec["scenario"], rec["questions"]), strategy, loaded.model,
                                     loaded.tokenizer, loaded.instruct, retriever, k, budget, gen)
                seconds = time.perf_counter() - start
                scores.append({**score_prediction(resp, rec, trace, new_words), **_costs(trace, strategy.whole_prompt),
                               "sec_per_prompt": seconds})
                predictions.append({"id": rec.get("id"), "strategy": strategy.name, "budget": budget,
                                    "response": resp.to_dict(), "queries": trace["queries"],
                                    "rewrites": trace["rewrites"], "scores": scores[-1]})
            rows.append({"strategy": strategy.name, "budget": budget, "n_prompts": len(records), "k": k,
                         **aggregate(scores), "same_as": None})
            log.info("%s", {m: rows[-1][m] for m in ("strategy", "budget", *METRICS)})
    return rows, predictions


def _cell(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict]) -> str:
    """One line per strategy x budget; ``–`` where a metric does not apply (no retriever / no gold docs)."""
    cols = [*METRICS, *COSTS]
    head = "| strategy | budget | " + " | ".join(HEADERS[c] for c in cols) + " |"
    lines = [head, "|---|---|" + "---:|" * len(cols)]
    for r in rows:
        budget = r["budget"] + (f" (= {r['same_as']})" if r.get("same_as") else "")
        cells = [_cell(r.get(c), 3 if c in METRICS else 1) for c in cols]
        lines.append(f"| {r['strategy']} | {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def log_wandb(cfg: DictConfig, out: Path, rows: list[dict], predictions: list[dict], records: list[dict]) -> None:
    """Numbers and config only; prompts and generations only with ``log_text=true``."""
    import wandb

    cols = ["strategy", "budget", *METRICS, *COSTS]
    wb = cfg.logger.wandb
    run = wandb.init(project=wb.get("project") or "qwenft", name=wb.get("name"), dir=str(out), group=wb.get("group"),
                     tags=list(wb.get("tags") or []), job_type="evaluate",
                     mode="offline" if wb.get("offline", True) else "online",
                     config={"model": cfg.model.get("_target_"), "k": cfg.k, "n_prompts": len(records),
                             "strategies": sorted({r["strategy"] for r in rows}),
                             "budgets": sorted({r["budget"] for r in rows}),
                             "retrieval": cfg.retrieval.get("_target_"), "generation": OmegaConf.to_container(cfg.generation, resolve=True)})
    run.log({"clinical_metrics": wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])})
    for r in rows:
        for m in METRICS:
            run.summary[f"{r['strategy']}/{r['budget']}/{m}"] = r[m]
    if cfg.log_text:
        by_id = {rec.get("id"): rec for rec in records}
        data = [[p["strategy"], p["budget"], by_id[p["id"]]["scenario"], json.dumps(p["response"])]
                for p in predictions]
        run.log({"clinical_samples": wandb.Table(columns=["strategy", "budget", "scenario", "response"], data=data)})
    run.finish()
