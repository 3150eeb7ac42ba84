"""A clinical data set x strategies x budgets -> ONE table of means with 95 % confidence intervals.

    qwenft evaluate model=offline eval_data=medquad eval_data.path=/data/medquad.jsonl.gz n_prompts=100 \\
        "strategies=[whole_prompt,decomposition,pool_rerank]" k=5

* **Data** (``eval_data=``): the bundled synthetic set (``demo``, or any clinical file as ``data_path=``), or a
  real data set built from the user's files (``qwenft.clinical.datasets``: MedQuAD, AgentClinic, K-QA, MIRAGE);
  a data set that comes with a knowledge base (MedQuAD) is searched through the configured retriever.
* **Budgets**, compared both ways (see ``strategies.py``): ``per_question`` (k documents per question; the
  whole-prompt baseline gets k) and ``per_prompt`` (k x n per prompt of n questions; the baseline reads them all,
  a per-question strategy k for each question). A per-question strategy reads the same documents under both
  budgets, so it is run once and its row repeated (``same_as``); without a retriever every strategy runs once.
* **Uncertainty**: every metric is a mean over prompts with a 95 % percentile-bootstrap interval over prompts
  (``qwenft.metrics.bootstrap``, seeded), its ``n``, and the paired difference of every strategy to
  ``reference_strategy`` at the same budget with its own interval (the same resampled prompts on both sides).
* **Resumable**: each finished prompt is appended to ``predictions.cache.jsonl`` in ``out``, keyed by (prompt
  content, strategy and its settings, budget, model/retrieval/generation config); rerunning with the same
  ``out=`` skips what is there. The key covers configs, not weight bytes: retrained weights at the same path
  need a fresh ``out``. ``table.md``, ``metrics.json`` and ``predictions.jsonl`` are written atomically at the end.
* ``retrieval_only=true``: no model is loaded; strategies that retrieve without the model (``whole_prompt``,
  ``decomposition``, ``pool_rerank``) are scored on retrieval alone (recall@k, hit@k, MRR). The documents are
  the ones the full run would read (tests check it against ``answer``).
* ``answers=false``: retrieval alone for every strategy, the query-writing ones included: the model writes the
  rewrites -- those of ``rewrite_batch`` prompts in one batched call -- and no answer is generated (the
  retrieval grid of every translation at both scopes; ``stages.py``).
* **Scopes** (``strategy.scope``, ``strategy.layout``; ``strategies.py``): a prompt-scope strategy retrieves
  k x n documents for the prompt under either budget, so its row is run once, like a per-question strategy's.
* **Pooled retrieval**: beside each question's own documents (recall@k, hit@k, MRR), ``pool hit`` and
  ``pool MRR`` score every question against the prompt's whole pool -- all the documents it retrieved, k x n
  at most, in pool order (question scope: its questions' documents interleaved by rank).
* **Costs** per prediction and per row: retrieval queries, documents read, generate calls, prompt and generated
  tokens, seconds per prompt.

Prompts and generations stay in the run directory; they go to W&B only with ``log_text=true``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from qwenft.clinical.output import Answer, Response
from qwenft.clinical.parse import Parsed
from qwenft.clinical.stages import answer
from qwenft.clinical.strategies import BUDGETS, Strategy
from qwenft.config import conf_dir
from qwenft.errors import UserError
from qwenft.metrics.bootstrap import Estimate, bootstrap_mean, paired_difference
from qwenft.metrics.clinical import score_prediction

log = logging.getLogger(__name__)

METRICS = ("summary_rougeL", "answer_rougeL", "answer_f1", "coverage", "format_valid", "recall_at_k", "hit_at_k",
           "mrr", "pool_hit", "pool_mrr", "new_term_recall", "diagnosis_match", "must_have_coverage", "contradiction",
           "mc_accuracy")
RETRIEVAL_METRICS = ("recall_at_k", "hit_at_k", "mrr", "pool_hit", "pool_mrr")
POOL_METRICS = ("pool_hit", "pool_mrr")
COSTS = ("queries_per_prompt", "docs_per_prompt", "generate_calls", "prompt_tokens", "generated_tokens",
         "sec_per_prompt")
TRACE_KEYS = ("queries", "rewrites", "retrieved", "pool", "retrieval", "generate_calls", "prompt_tokens",
              "generated_tokens", "format_valid")
HEADERS = {"summary_rougeL": "summary R-L", "answer_rougeL": "answer R-L", "answer_f1": "answer F1",
           "coverage": "coverage", "format_valid": "format ok", "recall_at_k": "recall@k", "hit_at_k": "hit@k",
           "mrr": "MRR", "pool_hit": "pool hit", "pool_mrr": "pool MRR", "new_term_recall": "new-term recall",
           "diagnosis_match": "diagnosis",
           "must_have_coverage": "must-have cov.", "contradiction": "contradiction", "mc_accuracy": "MC accuracy",
           "queries_per_prompt": "queries", "docs_per_prompt": "docs read", "generate_calls": "gen calls",
           "prompt_tokens": "prompt tok", "generated_tokens": "gen tok", "sec_per_prompt": "s/prompt"}


def load_strategy(name: str, selected: DictConfig | None = None) -> Strategy:
    """``conf/strategy/<name>.yaml`` -- or the composed ``strategy`` group when it is that one, so overrides
    such as ``strategy.n_queries=5`` apply to it."""
    if selected is not None and selected.get("name") == name:
        return build_strategy(selected)
    return build_strategy(strategy_config(name))


def strategy_config(name: str, _seen: tuple[str, ...] = ()) -> DictConfig:
    """``conf/strategy/<name>.yaml`` with its defaults list merged as Hydra merges it for ``strategy=<name>``:
    a named combination is a small file, e.g. ``defaults: [step_back, _self_]`` plus ``scope: prompt``. Only
    other files of the same folder and ``_self_`` (implicitly last) may be listed."""
    path = conf_dir() / "strategy" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise UserError(f"strategies: unknown strategy {name!r} (known: {', '.join(known)})")
    own = OmegaConf.load(path)
    defaults = list(own.pop("defaults", None) or [])
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create()
    for entry in defaults:
        if not isinstance(entry, str) or entry in _seen or entry == name:
            raise UserError(f"{path}: defaults entry {entry!r}: must name another strategy file of the folder")
        merged = OmegaConf.merge(merged, own if entry == "_self_" else strategy_config(entry, (*_seen, name)))
    return merged


def build_strategy(config: DictConfig) -> Strategy:
    """Instantiated, with a bad value's own one-line error (not Hydra's wrapper) for library callers too."""
    try:
        return instantiate(config)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


def needs_model_to_retrieve(strategy: Strategy) -> bool:
    """Strategies whose queries the model writes at their scope (multi_query, rag_fusion, step_back, hyde)."""
    return strategy.writes_queries() and not hasattr(strategy, "retrieve")


def retrieve_only(parsed: Parsed, strategy: Strategy, retriever, k: int, budget: str) -> dict:
    """The documents each question would read, without a model: the retrieval half of ``answer`` for
    strategies that write no queries (``retrieval_only=true``)."""
    from qwenft.clinical.stages import PromptRun

    if hasattr(strategy, "retrieve"):
        return strategy.retrieve(parsed, retriever, k, budget)
    if needs_model_to_retrieve(strategy):
        raise UserError(f"strategy {strategy.name} writes its queries with the model: not with retrieval_only=true")
    return PromptRun(parsed, strategy, retriever, k, budget).retrieve(None)


def answer_prompt(parsed: Parsed, strategy: Strategy, loaded, retriever, k: int, budget: str,
                  gen: dict) -> tuple[Response, dict]:
    """A strategy that answers a whole prompt itself (``pool_rerank``) does; the others go through ``answer``."""
    own = getattr(strategy, "answer_prompt", None)
    if own is not None:
        return own(parsed, loaded.model, loaded.tokenizer, loaded.instruct, retriever, k, budget, gen)
    return answer(parsed, strategy, loaded.model, loaded.tokenizer, loaded.instruct, retriever, k, budget, gen)


def _costs(trace: dict, strategy: Strategy) -> dict[str, float]:
    """What a prompt cost: retrieval queries issued, documents put in contexts, generate calls, tokens (NaN in
    predictions cached before tokens were counted)."""
    # whole_prompt's entries cached before scopes repeat its one query for every question
    queries = trace["queries"][:1] if strategy.whole_prompt else trace["queries"]
    docs = trace["retrieved"][:1] if strategy.whole_answer else trace["retrieved"]
    return {"queries_per_prompt": float(sum(map(len, queries))) if trace["retrieval"] else 0.0,
            "docs_per_prompt": float(sum(map(len, docs))),
            "generate_calls": float(trace["generate_calls"]),
            **{c: float(trace.get(c, math.nan)) for c in ("prompt_tokens", "generated_tokens")}}


def pooled_scores(record: dict, trace: dict) -> dict[str, float]:
    """Each question's gold documents against the prompt's whole pool (module docstring): hit and reciprocal
    rank, averaged over the questions with gold documents; NaN where nothing was searched or nothing is known."""
    from qwenft.metrics.clinical import mrr
    from qwenft.retrieval.fusion import interleave

    gold = [g for g in (record.get("gold_docs") or []) if g]
    if not gold or trace.get("retrieval") is False:
        return {m: math.nan for m in POOL_METRICS}
    pool = list(trace.get("pool") or interleave(list(trace.get("retrieved") or [])))
    return {"pool_hit": sum(bool(set(pool) & set(g)) for g in gold) / len(gold),
            "pool_mrr": sum(mrr(pool, list(g)) for g in gold) / len(gold)}


def check_retrieval_run(retriever, rewrite_batch: int) -> None:
    """``answers=false``: what it needs besides the model, checked before the model loads."""
    if retriever is None:
        raise UserError("answers=false scores retrieval alone: it needs a retriever (retrieval=bm25, dense or hybrid)")
    if rewrite_batch < 1:
        raise UserError(f"rewrite_batch={rewrite_batch}: must be >= 1")


def batched_retrieval(records: list[dict], strategy: Strategy, loaded, retriever, k: int, budget: str, gen: dict,
                      settings: str, batch: int):
    """``answers=false`` for a strategy whose queries the model writes: the rewrites of ``batch`` prompts in one
    generate call (``stages.run_stage``), then each prompt's retrieval; yields the cache entries in record order.
    A prompt's seconds are its share of its chunk's time."""
    from qwenft.clinical.stages import PromptRun, generator, run_stage

    generate = generator(loaded.model, loaded.tokenizer, loaded.instruct, gen)
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        began = time.perf_counter()
        runs = [PromptRun(Parsed(rec["scenario"], rec["questions"]), strategy, retriever, k, budget) for rec in chunk]
        for run, rewrites in zip(runs, run_stage(runs, PromptRun.rewrite_requests, generate), strict=True):
            run.retrieve(rewrites)
        seconds = (time.perf_counter() - began) / len(chunk)
        for rec, run in zip(chunk, runs, strict=True):
            yield {"key": prediction_key(rec, strategy, budget, settings), "id": rec.get("id"),
                   "strategy": strategy.name, "budget": budget, "response": run.retrieval_response().to_dict(),
                   "seconds": seconds, "trace": {t: run.trace.get(t) for t in TRACE_KEYS}}


# ------------------------------------------------------------------------------------------ prediction cache


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def prediction_key(record: dict, strategy: Strategy, budget: str, settings: str) -> str:
    """(prompt content, strategy class and settings -- scope and layout included --, budget, run settings) ->
    one key. A question-scope strategy keeps the key it had before scopes existed (``Strategy.key_settings``)."""
    described = {"class": f"{type(strategy).__module__}.{type(strategy).__qualname__}",
                 **strategy.key_settings()}
    return digest({"record": record, "strategy": described, "budget": budget, "settings": settings})


class PredictionCache:
    """Append-only JSONL of finished prompts. A line cut short by a kill is ignored (and rewritten later)."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.entries = path, {}
        self._newline = False  # a killed run may have left half a line: the next entry starts on a fresh one
        if path is not None and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            self._newline = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and "key" in entry:
                    self.entries[entry["key"]] = entry
        self.resumed = len(self.entries)

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def add(self, entry: dict) -> None:
        self.entries[entry["key"]] = entry
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(("\n" if self._newline else "") + json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()
        self._newline = False


# ------------------------------------------------------------------------------------------------ evaluation


@dataclass
class Evaluation:
    """Rows (strategy x budget: mean, CI and n per metric), paired differences to the reference, every
    prediction, and notes for the table."""

    rows: list[dict]
    differences: list[dict]
    predictions: list[dict]
    reference: str | None
    notes: list[str] = field(default_factory=list)
    resumed: int = 0


def has_gold(records: list[dict]) -> bool:
    """Whether any record names a gold document (recall@k, hit@k and MRR need them)."""
    return any(ids for rec in records for ids in (rec.get("gold_docs") or []))


def gold_outside_kb(records: list[dict], retriever) -> str | None:  # noqa: ANN001
    """A note when gold document ids are not in the knowledge base searched: such a document can never be
    retrieved, so recall is 0 by construction (usually a knowledge base other than the data's)."""
    kb = getattr(retriever, "kb", None)
    if kb is None or not hasattr(kb, "ids"):
        return None
    gold = {str(d) for rec in records for ids in (rec.get("gold_docs") or []) for d in ids}
    missing = sorted(gold - set(kb.ids()))
    if not missing:
        return None
    if len(missing) == len(gold):
        return (f"none of the gold document ids of the data ({len(gold)}, e.g. {missing[0]!r}) is in the knowledge "
                f"base {kb.path}: recall@k, hit@k and MRR are 0 by construction (is it the data's knowledge base?)")
    return (f"{len(missing)} of {len(gold)} gold document ids (e.g. {missing[0]!r}) are not in the knowledge base "
            f"{kb.path}: those documents can never be retrieved")


def _summarise(scores: list[dict], keys: tuple[str, ...], n_resamples: int, confidence: float,
               seed: int) -> dict[str, Estimate]:
    return {m: bootstrap_mean([s.get(m, math.nan) for s in scores], n_resamples, confidence, seed) for m in keys}


def evaluate(records: list[dict], strategies: list[Strategy], loaded, retriever, k: int, budgets: list[str],
             gen: dict, new_words: list[str] | None = None, *, reference: str | None = "decomposition",
             cache: PredictionCache | None = None, settings: str = "", retrieval_only: bool = False,
             progress: bool = True, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
             on_prompt: Callable[[dict], None] | None = None, answers: bool = True,
             rewrite_batch: int = 32) -> Evaluation:
    """Run (or resume) every strategy x budget over ``records`` and summarise with intervals. ``answers=False``:
    rewrites and retrieval only, the rewrites of ``rewrite_batch`` prompts per generate call (module docstring)."""
    from tqdm.auto import tqdm

    for b in budgets:
        if b not in BUDGETS:
            raise UserError(f"budgets: {b!r} is not one of {', '.join(BUDGETS)}")
    if not 0 < confidence < 1:  # checked here too, not only after every prompt has been generated
        raise UserError(f"bootstrap.confidence={confidence}: must be a number in (0, 1)")
    if n_resamples < 1:
        raise UserError(f"bootstrap.n_resamples={n_resamples}: must be an integer >= 1")
    cache = cache or PredictionCache(None)
    notes: list[str] = []
    if retrieval_only:
        if retriever is None:
            raise UserError("retrieval_only=true needs a retriever (retrieval=bm25, dense or hybrid)")
        if not has_gold(records):
            raise UserError("retrieval_only=true scores retrieval against gold_docs, and no record has any: "
                            "nothing to score (add gold_docs, or drop retrieval_only to score the answers)")
        skipped = [s.name for s in strategies if needs_model_to_retrieve(s)]
        if skipped:
            notes.append(f"retrieval_only: {', '.join(skipped)} skipped (their queries are written by the model)")
            strategies = [s for s in strategies if not needs_model_to_retrieve(s)]
    if not answers:
        check_retrieval_run(retriever, rewrite_batch)
        if loaded is None and any(needs_model_to_retrieve(s) for s in strategies):
            raise UserError("answers=false: strategies that write their queries need the model (loaded=None)")
        notes.append(f"answers=false: retrieval alone; the model's rewrites of up to {rewrite_batch} prompts per "
                     "generate call (gen calls: the calls a prompt had rows in; s/prompt: its share of its call)")
    retrieval_alone = retrieval_only or not answers
    keys = RETRIEVAL_METRICS if retrieval_alone else METRICS
    outside = gold_outside_kb(records, retriever)
    if outside:
        notes.append(outside)
        log.warning(outside)
    rows, predictions, per_prompt = [], [], {}
    for strategy in strategies:
        first_budget = None
        for budget in budgets:
            if first_budget is not None and (retriever is None or not strategy.whole_prompt):
                same = next(r for r in rows if r["strategy"] == strategy.name and r["budget"] == first_budget)
                rows.append({**same, "budget": budget, "same_as": first_budget})
                per_prompt[(strategy.name, budget)] = per_prompt[(strategy.name, first_budget)]
                continue
            first_budget = first_budget or budget
            scores = []
            bar = tqdm(records, desc=f"{strategy.name} {budget}", unit="prompt", disable=not progress,
                       file=sys.stderr, leave=True)

            def predict(rec: dict, strategy: Strategy = strategy, budget: str = budget) -> dict:
                parsed = Parsed(rec["scenario"], rec["questions"])
                start = time.perf_counter()
                if retrieval_alone:  # answers=false reaches here only for strategies that write no queries
                    trace = retrieve_only(parsed, strategy, retriever, k, budget)
                    resp = Response("", [Answer(q, "", ids) for q, ids in
                                         zip(parsed.units()[1], trace["retrieved"], strict=True)])
                else:
                    resp, trace = answer_prompt(parsed, strategy, loaded, retriever, k, budget, gen)
                return {"key": prediction_key(rec, strategy, budget, settings), "id": rec.get("id"),
                        "strategy": strategy.name, "budget": budget, "response": resp.to_dict(),
                        "seconds": time.perf_counter() - start,
                        "trace": {t: trace.get(t) for t in TRACE_KEYS}}

            # an engine that batches across requests (vLLM) gets several prompts in flight; results still come
            # back (and are cached, scored) in record order
            workers = 1 if retrieval_alone else max(int(getattr(loaded, "parallel", 1) or 1), 1)
            todo = [rec for rec in records if cache.get(prediction_key(rec, strategy, budget, settings)) is None]
            pool = ThreadPoolExecutor(workers) if workers > 1 and len(todo) > 1 else None
            ahead = iter(pool.map(predict, todo)) if pool is not None else None
            if not answers and needs_model_to_retrieve(strategy):  # the rewrites of a chunk in one call
                ahead = batched_retrieval(todo, strategy, loaded, retriever, k, budget, gen, settings, rewrite_batch)
            started = time.perf_counter()
            try:
                for rec in bar:
                    key = prediction_key(rec, strategy, budget, settings)
                    entry = cache.get(key)
                    if entry is None:
                        entry = next(ahead) if ahead is not None else predict(rec)
                        cache.add(entry)
                        if on_prompt is not None:
                            on_prompt(entry)
                    trace = entry["trace"]
                    scored = score_prediction(Response.from_dict(entry["response"]), rec, trace, new_words)
                    scored.update(pooled_scores(rec, trace))
                    scores.append({**{m: scored[m] for m in keys}, **_costs(trace, strategy),
                                   "sec_per_prompt": float(entry["seconds"])})
                    predictions.append({k_: entry[k_] for k_ in ("id", "strategy", "budget", "response")}
                                       | {"queries": trace["queries"], "rewrites": trace["rewrites"],
                                          "scores": scores[-1]})
            finally:
                if pool is not None:
                    pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            if pool is not None:
                notes.append(f"{strategy.name} {budget}: {len(todo)} prompts answered {workers} at a time by "
                             f"{getattr(loaded, 'name', '?')} in {time.perf_counter() - started:.1f} s; s/prompt is "
                             "each prompt's own latency")
            per_prompt[(strategy.name, budget)] = scores
            est = _summarise(scores, keys, n_resamples, confidence, seed)
            costs = {c: sum(s[c] for s in scores) / len(scores) if scores else math.nan for c in COSTS}
            rows.append({"strategy": strategy.name, "budget": budget, "n_prompts": len(records), "k": k,
                         **{m: e.mean for m, e in est.items()}, **costs,
                         "ci": {m: [e.lo, e.hi] for m, e in est.items()}, "n": {m: e.n for m, e in est.items()},
                         "same_as": None})
            log.info("%s %s: %s", strategy.name, budget,
                     {m: round(e.mean, 3) for m, e in est.items() if not math.isnan(e.mean)})
    differences = []
    names = [s.name for s in strategies]
    if reference and reference in names:
        for row in rows:
            ref = per_prompt.get((reference, row["budget"]))
            if row["strategy"] == reference or ref is None:
                continue
            mine = per_prompt[(row["strategy"], row["budget"])]
            differences.append({"strategy": row["strategy"], "budget": row["budget"], "reference": reference,
                                **{m: paired_difference([s.get(m, math.nan) for s in mine],
                                                        [s.get(m, math.nan) for s in ref],
                                                        n_resamples, confidence, seed).to_dict() for m in keys}})
    elif reference:
        notes.append(f"reference_strategy={reference} is not among the strategies: no paired differences")
    return Evaluation(rows, differences, predictions, reference if differences else None, notes, cache.resumed)


# --------------------------------------------------------------------------------------------------- tables


def _num(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _with_ci(mean: float, lo: float, hi: float, n: int, n_all: int | None = None, signed: bool = False) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    fmt = "+.3f" if signed else ".3f"
    text = f"{mean:{fmt}}" + ("" if math.isnan(lo) else f" [{lo:{fmt}}, {hi:{fmt}}]")
    return text + (f" (n={n})" if n_all is not None and n != n_all else "")


def shown_metrics(rows: list[dict]) -> list[str]:
    """Metrics that apply to at least one row (the others would be a column of dashes)."""
    return [m for m in METRICS if any(not math.isnan(r.get(m, math.nan)) for r in rows)]


def markdown_table(rows: list[dict], differences: list[dict] | None = None, reference: str | None = None,
                   confidence: float = 0.95) -> str:
    """Means with [CI] per strategy x budget (``n`` prompts; ``(n=..)`` where a metric applies to fewer), the
    costs, then the paired differences to ``reference`` (``*``: the interval excludes 0)."""
    metrics = shown_metrics(rows)
    cols = [HEADERS[m] for m in metrics] + [HEADERS[c] for c in COSTS]
    lines = ["| strategy | budget | n | " + " | ".join(cols) + " |", "|---|---|---:|" + "---:|" * len(cols)]
    for r in rows:
        budget = r["budget"] + (f" (= {r['same_as']})" if r.get("same_as") else "")
        cells = [_with_ci(r[m], *r["ci"][m], r["n"][m], r["n_prompts"]) for m in metrics]
        cells += [_num(r.get(c), 1) if c != "sec_per_prompt" else _num(r.get(c), 3 if r.get(c, 1) < 1 else 1)
                  for c in COSTS]
        lines.append(f"| {r['strategy']} | {budget} | {r['n_prompts']} | " + " | ".join(cells) + " |")
    if differences:
        lines += ["", f"Paired difference to {reference} at the same budget, mean [{confidence:.0%} CI] over the "
                  "same prompts; * = the interval excludes 0.", "",
                  "| strategy | budget | " + " | ".join(HEADERS[m] for m in metrics) + " |",
                  "|---|---|" + "---:|" * len(metrics)]
        for d in differences:
            cells = []
            for m in metrics:
                e = d[m]
                text = _with_ci(e["mean"], e["lo"], e["hi"], e["n"], signed=True)
                cells.append(text + ("*" if Estimate(**e).excludes_zero() else ""))
            lines.append(f"| {d['strategy']} | {d['budget']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def log_wandb(cfg: DictConfig, out: Path, result: Evaluation, records: list[dict]) -> None:
    """Numbers (means, interval bounds, n) and config only; prompts and generations only with ``log_text=true``."""
    import wandb

    metrics = shown_metrics(result.rows)
    cols = ["strategy", "budget", "n_prompts"] + [f"{m}{s}" for m in metrics for s in ("", "_lo", "_hi")] + list(COSTS)
    wb = cfg.logger.wandb
    run = wandb.init(project=wb.get("project") or "qwenft", name=wb.get("name"), dir=str(out), group=wb.get("group"),
                     tags=list(wb.get("tags") or []), job_type="evaluate",
                     mode="offline" if wb.get("offline", True) else "online",
                     config={"model": cfg.model.get("_target_"), "k": cfg.k, "n_prompts": len(records),
                             "eval_data": cfg.eval_data.get("_target_"),
                             "strategies": sorted({r["strategy"] for r in result.rows}),
                             "budgets": sorted({r["budget"] for r in result.rows}),
                             "reference_strategy": result.reference,
                             "retrieval": cfg.retrieval.get("_target_"),
                             "generation": OmegaConf.to_container(cfg.generation, resolve=True)})

    def values(r: dict) -> list:
        return [r["strategy"], r["budget"], r["n_prompts"]] + [
            v for m in metrics for v in (r[m], *r["ci"][m])] + [r.get(c) for c in COSTS]

    run.log({"clinical_metrics": wandb.Table(columns=cols, data=[values(r) for r in result.rows])})
    for r in result.rows:
        for m in metrics:
            run.summary[f"{r['strategy']}/{r['budget']}/{m}"] = r[m]
            run.summary[f"{r['strategy']}/{r['budget']}/{m}_ci"] = r["ci"][m]
    for d in result.differences:
        for m in metrics:
            run.summary[f"{d['strategy']}/{d['budget']}/{m}_minus_{d['reference']}"] = d[m]["mean"]
    if cfg.log_text:
        by_id = {rec.get("id"): rec for rec in records}
        data = [[p["strategy"], p["budget"], by_id[p["id"]]["scenario"], json.dumps(p["response"])]
                for p in result.predictions]
        run.log({"clinical_samples": wandb.Table(columns=["strategy", "budget", "scenario", "response"], data=data)})
    run.finish()


def retrieval_config(retrieval: DictConfig, data) -> DictConfig:
    """The retrieval config, searching the data set's own knowledge base when it has one (or the one given as
    ``eval_data.kb_path``); a data set without one needs it whenever retrieval is on."""
    if "kb_path" not in retrieval:  # retrieval=none
        return retrieval
    if data.kb_path:
        retrieval = OmegaConf.create(OmegaConf.to_container(retrieval, resolve=True))
        with open_dict(retrieval):
            retrieval.kb_path = data.kb_path
    elif data.needs_kb:
        raise UserError(f"eval_data.kb_path is not set: {data.name} has no knowledge base of its own; give one "
                        "(JSONL {id, text} or MedRAG {id, title, content}) or use retrieval=none")
    return retrieval


def build_eval_data(eval_data: DictConfig):
    """The data set's builder; its own one-line error (not Hydra's wrapper) for library callers too."""
    try:
        return instantiate(eval_data, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


def write_results(out: Path, data, result: Evaluation, k: int, bootstrap: dict) -> str:  # noqa: ANN001 - EvalData
    """``table.md`` (with the data's and the run's notes), ``metrics.json`` and ``predictions.jsonl`` in ``out``,
    each written atomically; returns the table."""
    import json

    from qwenft.atomic import atomic_write_text

    notes = [*data.notes, *result.notes]
    table = markdown_table(result.rows, result.differences, result.reference, float(bootstrap["confidence"]))
    table += "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")
    atomic_write_text(out / "table.md", table)
    atomic_write_text(out / "metrics.json", json.dumps(
        {"eval_data": data.name, "source": data.source, "source_sha256": data.sha256, "k": k,
         "reference_strategy": result.reference, "bootstrap": bootstrap, "notes": notes, "rows": result.rows,
         "differences": result.differences}, indent=2))
    atomic_write_text(out / "predictions.jsonl",
                      "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in result.predictions))
    return table
