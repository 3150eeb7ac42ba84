"""``qwenft evaluate``: a clinical data set x strategies -> one metrics table (markdown + JSON), W&B optional.

Strategies are compared at equal retrieval budget both ways: ``per_question`` (k documents per question; the
whole-prompt baseline gets k) and ``per_prompt`` (k x n documents per prompt of n questions; the baseline gets
them all in one query, per-question strategies k each). Only scores leave the machine: prompts and generations
go to W&B tables only with ``log_text=true``.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from qwenft.data.io import load_records
from qwenft.decomposition.parse import Parsed
from qwenft.decomposition.strategies import answer
from qwenft.metrics.clinical import aggregate, score_prediction

METRICS = ["summary_rougeL", "answer_rougeL", "answer_f1", "coverage", "format_valid", "recall_at_k", "mrr",
           "new_term_recall"]


def run(cfg) -> dict:  # noqa: ANN001
    records = load_records(cfg.data_path, schema="clinical").records[: cfg.n_prompts]
    loaded = instantiate(cfg.model)
    retriever = instantiate(cfg.retrieval) if cfg.retrieval.get("_target_") else None
    gen = OmegaConf.to_container(cfg.generation)
    conf = Path(__file__).resolve().parents[2] / "conf" / "decomposition"
    rows, samples = [], []
    for name in cfg.strategies:
        strategy = instantiate(OmegaConf.load(conf / f"{name}.yaml"))
        for budget in cfg.budgets:
            if budget == "per_prompt" and name != "none" and "per_question" in cfg.budgets:
                # per-question strategies retrieve k per question under both budgets: same numbers
                rows.append({**next(r for r in rows if r["strategy"] == name), "budget": budget})
                continue
            scores = []
            for rec in records:
                resp, trace = answer(Parsed(rec["scenario"], rec["questions"]), strategy, loaded.model,
                                     loaded.tokenizer, loaded.instruct, retriever, cfg.k, budget, gen)
                scores.append(score_prediction(resp, rec, trace))
                if cfg.log_text:
                    samples.append([name, budget, rec["scenario"], resp.to_text()])
            rows.append({"strategy": name, "budget": budget, **aggregate(scores)})
            print(rows[-1], flush=True)
    head = "| strategy | budget | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    lines += ["| " + " | ".join([r["strategy"], r["budget"], *(f"{r[m]:.3f}" for m in METRICS)]) + " |" for r in rows]
    table = "\n".join(lines) + "\n"
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    (out / "metrics.json").write_text(json.dumps(rows, indent=2))
    if cfg.logger == "wandb":
        import wandb

        run = wandb.init(project="qwenft", dir=str(out), mode="offline" if cfg.wandb_offline else "online",
                         config={"strategies": list(cfg.strategies), "k": cfg.k, "n_prompts": len(records)})
        run.log({"clinical": wandb.Table(columns=["strategy", "budget", *METRICS],
                                         data=[[r["strategy"], r["budget"], *(r[m] for m in METRICS)] for r in rows])})
        if cfg.log_text:
            run.log({"samples": wandb.Table(columns=["strategy", "budget", "scenario", "response"], data=samples)})
        run.finish()
    print(table)
    return {"rows": rows}
