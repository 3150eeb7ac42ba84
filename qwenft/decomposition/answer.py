"""``qwenft answer``: one clinical prompt (argv, file or stdin) -> summary + an answer per question."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

from qwenft.decomposition.parse import parse_prompt
from qwenft.decomposition.strategies import answer
from qwenft.errors import DataError, UserError


def build(cfg):  # noqa: ANN001, ANN201 - DictConfig in, (loaded, strategy, retriever) out
    loaded = instantiate(cfg.model)
    strategy = instantiate(cfg.decomposition)
    retriever = instantiate(cfg.retrieval) if cfg.retrieval.get("_target_") else None
    return loaded, strategy, retriever


def read_prompt(cfg) -> str:  # noqa: ANN001
    if cfg.get("prompt"):
        return str(cfg.prompt)
    if cfg.get("prompt_file"):
        path = Path(cfg.prompt_file)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(str(path), None, "file not found") from None
        except UnicodeDecodeError as err:
            raise DataError(str(path), None, f"not UTF-8 (byte {err.start})") from None
    if sys.stdin is not None and not sys.stdin.isatty():
        return sys.stdin.read()
    raise UserError("no prompt: use prompt=\"...\", prompt_file=PATH or pipe it on stdin")


def run(cfg) -> str:  # noqa: ANN001
    if cfg.output not in ("json", "text"):
        raise UserError(f"output={cfg.output!r}: use json or text")
    parsed = parse_prompt(read_prompt(cfg))
    loaded, strategy, retriever = build(cfg)
    gen = OmegaConf.to_container(cfg.generation)
    response, _ = answer(parsed, strategy, loaded.model, loaded.tokenizer, loaded.instruct, retriever,
                         cfg.k, cfg.budget, gen)
    out = response.to_json() if cfg.output == "json" else response.to_text()
    print(out)
    return out
