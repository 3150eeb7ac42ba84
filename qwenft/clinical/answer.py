"""One clinical prompt (argv, file or stdin) -> summary + an answer per question, with the configured model,
strategy and retriever."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.clinical.engines import Engine, decoding, open_engine
from qwenft.clinical.output import Response
from qwenft.clinical.parse import Parsed
from qwenft.errors import UserError
from qwenft.inputs import check_text, decode_utf8, limit_bytes, read_bytes, read_stream


def read_prompt(cfg: DictConfig) -> str:
    """``prompt="..."`` first, then ``prompt_file=PATH``, then stdin (when it is not a terminal).

    Bounded and strict before the model loads: a regular file only (a FIFO would block), at most
    ``QWENFT_MAX_PROMPT_MB`` (1 MiB), valid UTF-8 (stdin is read as bytes: Python would otherwise let latin-1
    bytes through as surrogates that fail inside the tokenizer).
    """
    from qwenft.clinical.schema import prompt_and_file

    both = prompt_and_file(cfg)
    if both:
        raise UserError(both)
    if cfg.get("prompt"):
        text = str(cfg.prompt)
        if len(text.encode("utf-8", "surrogatepass")) > limit_bytes("prompt"):
            raise UserError(f"prompt= is over the limit of {limit_bytes('prompt')} bytes (QWENFT_MAX_PROMPT_MB)")
        return check_text(text, "prompt=")
    if cfg.get("prompt_file"):
        path = Path(str(cfg.prompt_file)).expanduser()
        return decode_utf8(read_bytes(path, "prompt"), str(path))
    if sys.stdin is not None and not sys.stdin.isatty():
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text stream without bytes underneath (tests, embedding): already decoded
            return check_text(sys.stdin.read(limit_bytes("prompt") + 1)[: limit_bytes("prompt")], "<stdin>")
        return decode_utf8(read_stream(stream, "<stdin>", "prompt"), "<stdin>")
    raise UserError('no prompt: use prompt="...", prompt_file=PATH or pipe it on stdin')


def check_questions(parsed: Parsed, max_questions: int) -> None:
    """Each question is one row of one batched ``generate``: a prompt of 1 000 questions is refused, not run."""
    if len(parsed.questions) > max_questions:
        raise UserError(f"the prompt has {len(parsed.questions)} questions, more than max_questions={max_questions}; "
                        "split it into several prompts (or raise max_questions=N, at most 1000)")


def context_length(model) -> int | None:
    """How many positions the model was built for (``max_position_embeddings``), or None if it does not say."""
    if isinstance(model, Engine):
        return model.context_length
    config = getattr(model, "config", None)
    value = getattr(config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def check_context(parsed: Parsed, tokenizer, model, max_new_tokens: int, whole_prompt: bool) -> None:
    """Refuse a prompt the model cannot read whole: its longest generation (scenario + longest question, or the
    whole prompt) plus the tokens to generate must fit the context. Truncating a clinical scenario silently
    would answer a different case."""
    limit = context_length(model)
    if limit is None:
        return
    scenario, questions = parsed.units()
    count = len(tokenizer(scenario, add_special_tokens=False).input_ids)
    lengths = [len(tokenizer(q, add_special_tokens=False).input_ids) for q in questions]
    template = 64  # chat header, instructions of the prompt templates
    if whole_prompt:
        need = count + sum(lengths) + template + max_new_tokens * (len(questions) + 1)
    else:
        need = count + max(lengths, default=0) + template + max_new_tokens
    if need > limit:
        raise UserError(f"the prompt needs about {need} tokens (scenario {count}, questions up to "
                        f"{max(lengths, default=0)}, {max_new_tokens} to generate per text) but the model reads at "
                        f"most {limit}; shorten the scenario or lower generation.max_new_tokens")


def build(cfg: DictConfig, check=None):  # noqa: ANN001, ANN201 - (Engine, Strategy, retriever or None)
    """The engine of ``generation.engine`` serving the ``model`` group's model, the strategy and the retriever
    (``_target_`` + instantiate). The strategy and the retriever come first: a bad one fails before a model
    loads or a server starts; ``check(engine, strategy)`` runs before a vLLM server starts. The caller closes
    the engine."""
    strategy, retriever = instantiate(cfg.strategy), instantiate(cfg.retrieval)
    gen = OmegaConf.to_container(cfg.generation, resolve=True)
    engine = open_engine(gen, cfg.model, check=None if check is None else lambda e: check(e, strategy))
    return engine, strategy, retriever


def respond(cfg: DictConfig, parsed: Parsed) -> Response:
    check_questions(parsed, int(cfg.get("max_questions", 64)))  # before the model loads
    gen = decoding(OmegaConf.to_container(cfg.generation, resolve=True))

    def fits(engine: Engine, strategy) -> None:  # noqa: ANN001
        check_context(parsed, engine.tokenizer, engine.model, int(gen.get("max_new_tokens", 64)),
                      bool(getattr(strategy, "whole_answer", False)))  # whole_prompt, or layout=whole

    from qwenft.clinical.evaluate import answer_prompt

    engine, strategy, retriever = build(cfg, fits)
    with engine:  # answer_prompt: a strategy that answers a whole prompt itself (pool_rerank) does, as in serve
        response, _ = answer_prompt(parsed, strategy, engine, retriever, int(cfg.k), str(cfg.budget), gen)
    return response
