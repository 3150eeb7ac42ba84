"""What makes a GPU step fast without changing what it computes: frozen weights in bf16, compiled decoder layers.

* ``frozen_dtype``: under ``bf16-mixed`` every matmul already runs in bf16, so float32 copies of the frozen 0.5B
  weights only cost memory and a cast per use (autocast re-casts each weight every forward). Holding them in bf16
  halves weight memory and removes the casts; the trained parameters (LoRA, new rows, or every weight under full
  fine-tuning, which has no frozen weights) stay float32 for the optimizer. ``auto`` does it only on CUDA with a
  bf16 precision, so CPU runs compute what they always did.
* ``compile``: ``torch.compile`` on each decoder layer (regional compilation: the layers are identical, so one
  compiled graph serves all of them and compilation takes seconds, not minutes), with dynamic shapes because token
  budgets give batches of varying width. Off by default: on CPU the first compiled step of ``model=tiny`` took
  53-330 s (2 shared cores; Inductor needs a C++ compiler) for a model whose uncompiled steps take under a second;
  whether it pays on a GPU is what ``experiments/bench/gpu_throughput.py`` measures (``qwenft_best`` vs
  ``qwenft_best_nocompile``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from qwenft.errors import UserError

log = logging.getLogger(__name__)


def _on_cuda(accelerator) -> bool:  # noqa: ANN001 - a string or a Lightning accelerator object from the config
    name = str(accelerator).lower()
    return name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available())


def frozen_dtype(choice: str, accelerator, precision) -> torch.dtype | None:  # noqa: ANN001
    """The dtype to hold the frozen weights in (None: leave them as loaded)."""
    if choice == "auto":
        return torch.bfloat16 if _on_cuda(accelerator) and "bf16" in str(precision) else None
    if choice in ("float32", "bfloat16"):
        return getattr(torch, choice)
    raise UserError(f"frozen_dtype={choice!r}: choose auto, float32 or bfloat16")


def hold_frozen_in(model: nn.Module, dtype: torch.dtype | None) -> int:
    """Cast every frozen floating-point parameter to ``dtype`` and every trained one to float32; returns how many
    parameters (elements) were cast to ``dtype``."""
    if dtype is None:
        return 0
    cast = 0
    for p in model.parameters():
        if not p.is_floating_point():
            continue
        want = torch.float32 if p.requires_grad else dtype
        if p.dtype != want:
            p.data = p.data.to(want)
            cast += p.numel() if want == dtype else 0
    return cast


def compile_layers(model: nn.Module, dynamic: bool | None = True) -> int:
    """``torch.compile`` every decoder layer of ``model`` in place; returns how many were compiled."""
    from qwenft.train.module import backbone_and_head

    backbone, _ = backbone_and_head(model)
    layers = getattr(backbone, "layers", None)
    if layers is None:
        raise UserError("compile=true: this model has no decoder layers to compile (expected model.layers)")
    for layer in layers:
        layer.compile(dynamic=dynamic)
    return len(layers)
