"""Resuming a run: which checkpoint, and whether it belongs to this run's data, tokenizer and tensors.

Each check runs as early as what it compares is known (the data before the model loads, the tokenizer after the
extension, the tensors after wrapping) and always before the run writes anything, so a refused resume leaves the
old run as it was.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from qwenft.errors import UserError
from qwenft.train.checkpoint_io import load_checkpoint_file
from qwenft.train.identity import check_resume_shape
from qwenft.train.runinfo import tokenizer_sha256

log = logging.getLogger(__name__)


@dataclass
class Resume:
    """What a run resumes from (nothing for a fresh run): the checked checkpoint's path, state and records."""

    ckpt: Path | None = None
    state: dict | None = None  # memory-mapped; dropped once the tokenizer is checked
    previous_data: dict[str, str] | None = None  # allow_data_change=true: the hashes it was trained on
    shapes: dict[str, tuple] = field(default_factory=dict)
    step: int = 0


def open_resume(cfg: DictConfig, run_dir: Path, data_sha256: dict[str, str]) -> Resume:
    """``ckpt_path`` resolved, read and checked against this run's data and model settings (no model needed)."""
    ckpt = resolve_ckpt(cfg.get("ckpt_path"), run_dir)
    if ckpt is None:
        return Resume()
    state = load_checkpoint_file(ckpt, mmap=True)  # unreadable: one line, nothing written
    previous = check_resume_data(state, ckpt, data_sha256, bool(cfg.get("allow_data_change", False)))
    check_resume_shape(state, ckpt, cfg)  # another adapter / model / vocabulary setting
    return Resume(ckpt, state, previous, {k: tuple(v.shape) for k, v in state["state_dict"].items()},
                  int(state.get("global_step") or 0))


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """``last`` = this run dir's ``checkpoints/last.ckpt`` (point ``run_dir=``/``hydra.run.dir=`` at the old run);
    a run directory = its last checkpoint; anything else = a checkpoint file."""
    if not ckpt_path:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if str(ckpt_path) == "last" else Path(ckpt_path)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        hint = " (set run_dir= or hydra.run.dir= to the run to resume)" if str(ckpt_path) == "last" else ""
        raise UserError(f"ckpt_path={ckpt_path}: {path} does not exist{hint}")
    return path


def check_resume_data(state: dict | None, ckpt: Path | None, data_sha256: dict[str, str],
                      allow_change: bool) -> dict[str, str] | None:
    """Refuse to resume with other data than the checkpoint was trained on, unless ``allow_data_change=true``.

    The checkpoint's own record is the reference (older checkpoints: the ``run_info.json`` of the run that wrote
    them). Returns the previous hashes when a change is allowed (recorded in ``run_info.json``), else None.
    """
    if state is None or ckpt is None:
        return None
    saved = state.get("qwenft_data_sha256")
    if not isinstance(saved, dict):
        info = ckpt.parent.parent / "run_info.json"
        try:
            saved = json.loads(info.read_text()).get("data_sha256") if info.is_file() else None
        except (OSError, ValueError, AttributeError):
            saved = None
    if not isinstance(saved, dict):
        log.warning("%s: no record of the data it was trained on; cannot check the data is the same", ckpt)
        return None
    splits = sorted(set(saved) | set(data_sha256), key=lambda k: (("train", "val", "test") + (k,)).index(k))
    changed = [k for k in splits if saved.get(k) != data_sha256.get(k)]
    if not changed:
        return None
    split = changed[0]
    before, now = saved.get(split), data_sha256.get(split)
    what = (f"its {split} data had sha256 {before[:12]}…, now {now[:12]}…" if before and now else
            f"it was trained {'without' if not before else 'with'} a {split} split, "
            f"now {'without' if not now else 'with'}")
    if not allow_change:
        raise UserError(f"ckpt_path={ckpt}: resuming with other data than the checkpoint was trained on ({what}); "
                        "use the same data files, or set allow_data_change=true to continue on new data")
    log.warning("allow_data_change=true: resuming %s with changed data (%s)", ckpt, what)
    return dict(saved)


def check_resume_tokenizer(state: dict, ckpt: Path, tokenizer) -> None:
    """A checkpoint's rows belong to the tokenizer it was trained with: another one is refused up front."""
    saved = state.get("qwenft_tokenizer_sha256")
    now = tokenizer_sha256(tokenizer)
    if saved is not None and saved != now:
        raise UserError(f"ckpt_path={ckpt}: checkpoint was trained with a different tokenizer (sha256 {saved[:12]}…, "
                        f"now {now[:12]}…): resume with the same model/tokenizer config")


def check_resume_tensors(saved: dict[str, tuple], state: dict, ckpt: Path) -> None:
    """The checkpoint's tensors must be this model's trainable ones, name for name and size for size (a mismatch
    would fail inside ``trainer.fit``, after the run's files were rewritten)."""
    now = {k: tuple(v.shape) for k, v in state.items()}
    extra, missing = sorted(set(saved) - set(now)), sorted(set(now) - set(saved))
    wrong = sorted(k for k in set(saved) & set(now) if saved[k] != now[k])
    if wrong:
        raise UserError(f"ckpt_path={ckpt}: {len(wrong)} tensors have another size in this run (e.g. {wrong[0]}: "
                        f"{list(saved[wrong[0]])} in the checkpoint, {list(now[wrong[0]])} now): resume with the "
                        "settings the checkpoint was trained with")
    if extra or missing:
        name = (extra or missing)[0]
        raise UserError(f"ckpt_path={ckpt}: the checkpoint's trainable tensors differ from this run's "
                        f"({len(extra)} only in the checkpoint, {len(missing)} only in this run, e.g. {name}): "
                        "resume with the settings the checkpoint was trained with")
