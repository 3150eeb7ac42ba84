"""``qwenft answer``: one clinical prompt (argv, file or stdin) -> summary + an answer per question.

    echo "$PROMPT" | qwenft answer model=offline decomposition=decomposition retrieval=bm25 output=json

stdout carries the answer only (JSON stays machine-readable); the prompt is read and parsed before the model
loads, so a missing file or an empty prompt fails in a second with exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.decomposition.output import Response
from qwenft.decomposition.parse import Parsed, parse_prompt
from qwenft.decomposition.strategies import answer
from qwenft.errors import DataError, UserError

OUTPUTS = ("json", "text")


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
    return instantiate(cfg.model), instantiate(cfg.decomposition), instantiate(cfg.retrieval)


def respond(cfg: DictConfig, parsed: Parsed) -> Response:
    loaded, strategy, retriever = build(cfg)
    gen = OmegaConf.to_container(cfg.generation, resolve=True)
    response, _ = answer(parsed, strategy, loaded.model, loaded.tokenizer, loaded.instruct, retriever,
                         int(cfg.k), str(cfg.budget), gen)
    return response


def run(cfg: DictConfig) -> str:
    if cfg.output not in OUTPUTS:
        raise UserError(f"output={cfg.output!r}: use json or text")
    parsed = parse_prompt(read_prompt(cfg))  # an empty prompt fails before the model loads
    response = respond(cfg, parsed)
    out = response.to_json() if cfg.output == "json" else response.to_text()
    print(out, flush=True)
    return out
