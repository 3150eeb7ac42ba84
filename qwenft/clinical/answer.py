"""One clinical prompt (argv, file or stdin) -> summary + an answer per question, with the configured model,
strategy and retriever."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.clinical.output import Response
from qwenft.clinical.parse import Parsed
from qwenft.clinical.strategies import answer
from qwenft.errors import DataError, UserError


def read_prompt(cfg: DictConfig) -> str:
    """``prompt="..."`` first, then ``prompt_file=PATH``, then stdin (when it is not a terminal)."""
    if cfg.get("prompt"):
        return str(cfg.prompt)
    if cfg.get("prompt_file"):
        path = Path(str(cfg.prompt_file)).expanduser()
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(str(path), None, "file not found") from None
        except IsADirectoryError:
            raise DataError(str(path), None, "is a folder, not a file") from None
        except UnicodeDecodeError as err:
            raise DataError(str(path), None, f"not UTF-8 (byte {err.start})") from None
    if sys.stdin is not None and not sys.stdin.isatty():
        return sys.stdin.read()
    raise UserError('no prompt: use prompt="...", prompt_file=PATH or pipe it on stdin')


def build(cfg: DictConfig):  # noqa: ANN201 - (Loaded, Strategy, retriever or None)
    """The model, the strategy and the retriever named by the config groups (``_target_`` + instantiate)."""
    return instantiate(cfg.model), instantiate(cfg.strategy), instantiate(cfg.retrieval)


def respond(cfg: DictConfig, parsed: Parsed) -> Response:
    loaded, strategy, retriever = build(cfg)
    gen = OmegaConf.to_container(cfg.generation, resolve=True)
    response, _ = answer(parsed, strategy, loaded.model, loaded.tokenizer, loaded.instruct, retriever,
                         int(cfg.k), str(cfg.budget), gen)
    return response
