"""What a checkpoint is: the settings that shape its tensors, and the data it was trained on.

A checkpoint holds only the trainable tensors (LoRA matrices, new rows); their names and sizes follow from the
model, the adapter and the vocabulary settings, and their meaning from the frozen weights they sit on. Resuming
or exporting it under other settings crashed mid-training (state-dict / optimizer size mismatch) after the old
run's files were rewritten, or quietly put another run's weights under this run's card. Each checkpoint now
records ``qwenft_shape`` (and ``qwenft_data_sha256``, ``qwenft_tokenizer_sha256``); a resume or an export
compares them with its own before it writes anything. Older checkpoints are compared with their run's
``config.yaml``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from qwenft.errors import UserError

log = logging.getLogger(__name__)

#: keys of ``model`` that do not change the weights a checkpoint's tensors sit on
MODEL_FREE = ("cache_dir", "dtype", "trust_remote_code", "instruct")
PEFT_KEYS = ("method", "r", "alpha", "target_modules")
TOKENIZER_KEYS = ("extend", "trainable_rows", "init", "capitalized")


def checkpoint_shape(cfg: DictConfig) -> dict:
    """The settings that decide the checkpoint's tensors (names, sizes) and the frozen weights under them."""
    model = OmegaConf.to_container(cfg.model, resolve=True) if isinstance(cfg.get("model"), DictConfig) else {}
    peft = cfg.get("peft") or {}
    tok = cfg.get("tokenizer") or {}
    shape = {f"model.{k}": v for k, v in sorted(model.items()) if k not in MODEL_FREE}
    lora = peft.get("method") == "lora"
    for k in PEFT_KEYS:
        if k == "method" or lora:  # full fine-tuning ignores r, alpha and target_modules
            value = peft.get(k)
            if k == "target_modules" and value is not None:
                value = sorted(str(v) for v in value)
            shape[f"peft.{k}"] = value
    for k in TOKENIZER_KEYS:
        if k == "extend" or tok.get("extend"):
            shape[f"tokenizer.{k}"] = tok.get(k)
    return json.loads(json.dumps(shape, default=str))  # plain JSON types: what a checkpoint can hold


class RunIdentity(pl.Callback):
    """Every checkpoint records the data it was trained on and the settings that shape it."""

    def __init__(self, data_sha256: dict[str, str], shape: dict) -> None:
        self.data_sha256, self.shape = dict(data_sha256), dict(shape)

    def on_save_checkpoint(self, trainer, module, checkpoint):
        checkpoint["qwenft_data_sha256"] = self.data_sha256
        checkpoint["qwenft_shape"] = self.shape


def recorded_shape(state: dict, ckpt: Path) -> dict | None:
    """The checkpoint's own record, else (older checkpoints) the one its run's ``config.yaml`` gives."""
    saved = state.get("qwenft_shape")
    if isinstance(saved, dict):
        return saved
    config = ckpt.parent.parent / "config.yaml"
    try:
        cfg = OmegaConf.load(config) if config.is_file() else None
        if not isinstance(cfg, DictConfig) or not all(isinstance(cfg.get(k), DictConfig)
                                                       for k in ("model", "peft", "tokenizer")):
            return None  # not a qwenft run's config: no reference to compare with
        return checkpoint_shape(cfg)
    except Exception:  # noqa: BLE001 - unreadable: no reference to compare with
        return None


def shape_difference(saved: dict, now: dict) -> str | None:
    """``key=old`` vs ``key=new`` for the first setting that differs, or None."""
    for key in [*saved, *(k for k in now if k not in saved)]:
        if saved.get(key) != now.get(key):
            return f"{key}={as_override(saved.get(key))}, now {key}={as_override(now.get(key))}"
    return None


def check_resume_shape(state: dict, ckpt: Path, cfg: DictConfig) -> None:
    """A resume under another adapter, model or vocabulary setting is refused before the model loads."""
    saved = recorded_shape(state, ckpt)
    if saved is None:
        log.warning("%s: no record of the settings it was trained with; cannot check they are the same", ckpt)
        return
    diff = shape_difference(saved, checkpoint_shape(cfg))
    if diff:
        raise UserError(f"ckpt_path={ckpt}: the checkpoint was trained with {diff}: a resume must keep the "
                        "settings that shape the checkpoint (model, peft, tokenizer); resume with the old values, "
                        "or start a new run in a new folder")


def check_export_identity(state: dict, ckpt: Path, cfg: DictConfig, info: dict) -> None:
    """``qwenft export RUN_DIR``: the checkpoint must be this run's (its data and its settings), or the card
    would describe one run and the weights come from another."""
    saved = state.get("qwenft_data_sha256")
    known = [d for d in (info.get("data_sha256"), info.get("previous_data_sha256")) if isinstance(d, dict)]
    if isinstance(saved, dict) and known and all(saved != d for d in known):
        split = next((k for k in ("train", "val", "test", *saved) if saved.get(k) != known[0].get(k)), "train")
        before, now = saved.get(split) or "none", known[0].get(split) or "none"
        raise UserError(f"{ckpt}: not this run's checkpoint: it was trained on other data ({split} sha256 "
                        f"{before[:12]}…, this run's run_info.json: {now[:12]}…); export the run it came from")
    shape = state.get("qwenft_shape")
    if isinstance(shape, dict):
        diff = shape_difference(shape, checkpoint_shape(cfg))
        if diff:
            raise UserError(f"{ckpt}: not this run's checkpoint: it was trained with {diff} (this run's "
                            "config.yaml); export the run it came from")


def as_override(value) -> str:  # noqa: ANN001
    """A value as the user types it in an override (``peft.target_modules=[q_proj,v_proj]``), so the refusal line
    can be copied back: unlike ``rules.shown``, which quotes a bad value as YAML, strings are bare and lists
    unspaced."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)
