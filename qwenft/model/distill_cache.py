"""Distilled rows kept on disk, so the same extension is never distilled twice.

Why: distillation is the one costly step of ``tokenizer.init=distill`` (two to fifteen minutes for 100 words on a
2-core CPU), and the same rows are asked for again and again: ``qwenft export`` rebuilds a run's vocabulary, a
resumed or repeated run extends the same model with the same words, and a sweep or a benchmark trains several arms
on one extension. The rows depend only on the model, the new tokens and their initial rows, the text the snippets
come from, the settings and the precision, so a key over those finds them again. Delete
``$QWENFT_CACHE/distill`` (default ``~/.cache/qwenft/distill``) to distil afresh.

The model enters the key through a strided sample of every parameter (4 096 values a tensor, milliseconds): a
fine-tuned or merged model differs in all of its weights, so the sample tells it from the one it started from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)
SAMPLE = 4096  # values of each parameter in the model's fingerprint


def root() -> Path:
    """Where distilled rows are kept: ``$QWENFT_CACHE/distill``."""
    return Path(os.environ.get("QWENFT_CACHE", "~/.cache/qwenft")).expanduser() / "distill"


def _update(h: hashlib._Hash, t: Tensor) -> None:  # type: ignore[name-defined]
    flat = t.detach().reshape(-1)
    flat = flat[:: max(1, flat.numel() // SAMPLE)]
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(flat.float().cpu().numpy().tobytes())


def key(model: torch.nn.Module, words_ids: Sequence[tuple[str, int]], rows: Tensor, texts: Sequence[str],
        settings: object, precision: str) -> str:
    """A sha256 over everything the distilled rows depend on (see the module docstring)."""
    h = hashlib.sha256()
    h.update(json.dumps({"words": sorted(words_ids), "settings": dataclasses.asdict(settings),  # type: ignore[arg-type]
                         "precision": precision}, sort_keys=True).encode())
    _update(h, rows)
    for name, p in model.named_parameters():
        h.update(name.encode())
        _update(h, p)
    text_hash = hashlib.sha256()
    for text in texts:
        text_hash.update(text.encode("utf-8", "surrogatepass") + b"\x00")
    h.update(text_hash.digest())
    return h.hexdigest()


def load(digest: str, shape: tuple[int, ...]) -> tuple[Tensor, dict] | None:
    """The rows and summary stored under ``digest``, or None (absent, unreadable or of another shape)."""
    path = root() / f"{digest}.safetensors"
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            rows = f.get_tensor("rows")
            summary = json.loads((f.metadata() or {}).get("summary", "{}"))
    except Exception as err:  # noqa: BLE001 - a damaged cache entry is recomputed, never fatal
        log.warning("distill cache: %s unreadable (%s); distilling again", path, err)
        return None
    if tuple(rows.shape) != tuple(shape):
        return None
    return rows, summary


def save(digest: str, rows: Tensor, summary: dict) -> None:
    """Keep ``rows`` (written atomically; a failure to write only costs the next run the time)."""
    from safetensors.torch import save

    from qwenft.atomic import atomic_write_bytes

    path = root() / f"{digest}.safetensors"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save({"rows": rows.detach().float().cpu().contiguous()},
                                      metadata={"summary": json.dumps(summary)}))
    except OSError as err:
        log.warning("distill cache: could not write %s (%s)", path, err)
