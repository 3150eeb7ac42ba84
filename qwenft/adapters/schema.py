"""Schema of the ``peft`` config group (``conf/peft/*.yaml``, read by ``qwenft.adapters.apply``): each key's rule
and one-line doc, declared once. ``r`` and ``alpha`` depend on ``method`` (a full fine-tune has no rank), so their
rules are functions of the composed config; ``PeftSpec(...)`` built in Python checks the rest itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwenft.rules import OPT_TEXTS, PROB, Enum, Float, Int, Rule, check_fields, setting


def _lora(cfg: Any) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, "peft.method") == "lora"


def _rank(cfg: Any) -> Rule:
    return Int(1, 4096) if _lora(cfg) else Int(0, 4096)


def _alpha(cfg: Any) -> Rule:
    return Float(0, 1e6, lo_open=True) if _lora(cfg) else Float(0, 1e6)


@dataclass
class PeftSpec:
    """``peft``: what trains in the blocks (LoRA or every weight); the rows follow ``tokenizer.trainable_rows``."""

    method: str = setting("lora", Enum("lora", "full"), "lora: adapters on the projections; full: every weight")
    r: int = setting(16, _rank, "LoRA rank (>= 1 with lora; 0 with full)")
    alpha: float = setting(32, _alpha, "LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = setting(0.05, PROB, "dropout on the LoRA input")
    target_modules: list[str] | str | None = setting(None, OPT_TEXTS, "modules given adapters (null: every linear "
                                                                      "projection of the blocks)")

    def __post_init__(self) -> None:
        check_fields(self, "peft")
