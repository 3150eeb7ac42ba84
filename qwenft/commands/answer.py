"""``qwenft answer [prompt=...|prompt_file=PATH|stdin] [strategy=...] [retrieval=...] output=json|text``.

stdout carries the answer only (JSON stays machine-readable); the prompt is read and parsed before the model
loads, so a missing file or an empty prompt fails in a second with exit code 2.
"""

from __future__ import annotations

from omegaconf import DictConfig

from qwenft.clinical.answer import read_prompt, respond
from qwenft.clinical.parse import parse_prompt
from qwenft.errors import UserError

OUTPUTS = ("json", "text")


def run(cfg: DictConfig) -> str:
    if cfg.output not in OUTPUTS:
        raise UserError(f"output={cfg.output!r}: use json or text")
    parsed = parse_prompt(read_prompt(cfg))  # an empty prompt fails before the model loads
    response = respond(cfg, parsed)
    out = response.to_json() if cfg.output == "json" else response.to_text()
    print(out, flush=True)
    return out
