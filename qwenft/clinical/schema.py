"""Schemas of the answering verbs -- ``qwenft answer``, ``evaluate`` and ``serve`` (``conf/answer.yaml``,
``evaluate.yaml``, ``serve.yaml``): each key's rule and one-line doc, declared once; the groups they compose
(model, strategy, retrieval, generation) bring their own schemas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import ListConfig

from qwenft.clinical.generation_settings import GenerationSchema
from qwenft.clinical.strategies import BUDGETS, StrategySchema
from qwenft.model.schema import ModelSchema
from qwenft.retrieval.schema import RetrievalSchema
from qwenft.rules import BOOL, OPT_TEXT, SEED, TEXT, Enum, Float, Int, Rule, group, setting


def _one_or_list_of(names: tuple[str, ...], what: str = "") -> Rule:
    return Rule("any", check=lambda v: (isinstance(v, str) and v in names) or (
        isinstance(v, list | ListConfig) and len(v) > 0 and all(isinstance(x, str) and x in names for x in v)),
        text=f"a list {what + ' ' if what else ''}from: {', '.join(names)}")


def _strategies(cfg: Any) -> Rule:
    """The option files of ``conf/strategy`` (a file added there is accepted here too)."""
    from qwenft.config import conf_dir

    return _one_or_list_of(tuple(sorted(p.stem for p in (conf_dir() / "strategy").glob("*.yaml"))), "of strategy names")


K = Int(0, 100)
BUDGET = Enum(*BUDGETS)
MAX_QUESTIONS = Int(1, 1000)


@dataclass(kw_only=True)
class Answering:
    """The groups every answering verb composes."""

    generation: GenerationSchema = group(GenerationSchema)
    model: ModelSchema = group(ModelSchema)
    strategy: StrategySchema = group(StrategySchema)
    retrieval: RetrievalSchema = group(RetrievalSchema)


@dataclass(kw_only=True)
class AnswerSchema(Answering):
    """``conf/answer.yaml``: ``qwenft answer``."""

    prompt: Any = setting(None, Rule("any", null=True, check=lambda v: isinstance(v, str | int | float | bool),
                                     text="a text"), "the prompt (null: prompt_file, or stdin)")
    prompt_file: str | None = setting(None, OPT_TEXT, "a file holding the prompt")
    output: str = setting("text", Enum("json", "text"), "how the answer is printed")
    k: int = setting(3, K, "documents per question (see budget)")
    budget: str = setting("per_question", BUDGET, "per_question: k a question | per_prompt: k x n for whole_prompt")
    max_questions: int = setting(64, MAX_QUESTIONS, "more questions in one prompt are refused")


@dataclass
class BootstrapSchema:
    """``evaluate.bootstrap``: the percentile bootstrap over prompts behind every interval."""

    n_resamples: int = setting(1000, Int(1, 10**6), "resamples")
    confidence: float = setting(0.95, Float(0, 1, lo_open=True, hi_open=True), "the intervals' level")
    seed: int = setting(0, SEED, "the resampling seed")


@dataclass(kw_only=True)
class EvaluateSchema(Answering):
    """``conf/evaluate.yaml``: ``qwenft evaluate``."""

    data_path: str = setting(rule=TEXT, doc="clinical JSONL: scenario, questions, summary, answers")
    words_file: str | None = setting(None, OPT_TEXT, "new words for new-term recall")
    n_prompts: int | None = setting(12, Int(0, 10**6, null=True), "first N records (null or 0: all)")
    strategies: Any = setting(rule=_strategies, doc="the strategies compared")
    budgets: Any = setting(rule=_one_or_list_of(BUDGETS), doc="per_question and/or per_prompt")
    k: int = setting(2, K, "documents per question")
    reference_strategy: str | None = setting("decomposition", OPT_TEXT, "paired differences to this strategy")
    retrieval_only: bool = setting(False, BOOL, "no model: retrieval metrics of the strategies that need none")
    answers: bool = setting(True, BOOL, "false: the model writes the rewrites only (retrieval metrics)")
    rewrite_batch: int = setting(32, Int(1, 4096), "answers=false: prompts whose rewrites go in one engine call")
    progress: bool = setting(True, BOOL, "a progress bar per strategy x budget")
    bootstrap: BootstrapSchema = group(BootstrapSchema)
    log_text: bool = setting(False, BOOL, "prompts and generations go to W&B only when true")
    out: str = setting(rule=TEXT, doc="the evaluation's folder (tables, predictions cache)")


@dataclass(kw_only=True)
class ServeSchema(Answering):
    """``conf/serve.yaml``: ``qwenft serve``."""

    host: str = setting("127.0.0.1", TEXT, "address both APIs listen on (no authentication: keep it on loopback)")
    port: int = setting(8000, Int(0, 65535), "the clinical API's port (0: a free one)")
    k: int = setting(3, K, "documents per question unless a request says k")
    budget: str = setting("per_question", BUDGET, "unless a request says budget")
    max_questions: int = setting(64, MAX_QUESTIONS, "more questions in one prompt: 400")
    max_request_kb: int = setting(1024, Int(1, 1 << 20), "a larger request body: 413")
    body_timeout_s: float = setting(10, Float(0, 3600, lo_open=True), "a body not all there by then: 408")


def prompt_and_file(cfg: Any) -> str | None:
    """``prompt=`` and ``prompt_file=`` together: one of them would be ignored (``qwenft.clinical.answer``)."""
    if cfg.get("prompt") is not None and cfg.get("prompt_file") is not None:
        return (f"prompt= and prompt_file={cfg.get('prompt_file')} are both set: give one of them (or neither, "
                "and pipe the prompt on stdin)")
    return None
