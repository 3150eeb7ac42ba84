"""What a run records about itself (``run_info.json``) and where its logs go (W&B offline, CSV, none).

A result is only worth its provenance: the git commit, package versions and the sha256 of every data file and
of the tokenizer are written beside the metrics, and given to the logger as hyper-parameters.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig

from qwenft.errors import UserError
from qwenft.hardware import native_bf16

log = logging.getLogger(__name__)
PACKAGES = ("torch", "transformers", "peft", "pytorch-lightning", "hydra-core", "tokenizers", "datasets", "wandb",
            "qwenft")


def tokenizer_sha256(tokenizer) -> str:
    """The identity of a tokenizer: its whole ``tokenizer.json`` (vocab, merges, added tokens), hashed."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def git_dirty() -> bool | None:
    """Uncommitted changes to tracked files: the commit alone would not reproduce the run."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return versions


def run_info(cfg: DictConfig, data_hashes: dict[str, str]) -> dict:
    return {"git_commit": git_commit(), "git_dirty": git_dirty(), "python": platform.python_version(),
            "packages": package_versions(), "data_sha256": data_hashes, "seed": cfg.seed,
            # timings are only comparable between runs on the same kind of CPU at the same precision
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "native_bf16": native_bf16(),
                        "precision": str(cfg.trainer.get("precision"))}}


def cpu_model() -> str:
    path = Path("/proc/cpuinfo")
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def make_logger(cfg: DictConfig, run_dir: Path):
    """``logger.kind``: wandb (offline unless ``logger.offline=false``), csv, or none (``False`` for Lightning)."""
    kind = cfg.logger.kind
    if kind == "none":
        return False
    if kind == "csv":
        return pl.loggers.CSVLogger(save_dir=str(run_dir), name="csv")
    if kind == "wandb":
        # the CLI defaults WANDB_MODE to offline; an explicit logger.offline=false is the user asking for online
        os.environ["WANDB_MODE"] = "offline" if cfg.logger.offline else "online"
        if not cfg.logger.offline and not os.environ.get("WANDB_API_KEY") and not (Path.home() / ".netrc").exists():
            log.warning("logger.offline=false but no W&B key found (WANDB_API_KEY or `wandb login`): wandb will fail")
        return pl.loggers.WandbLogger(project=cfg.logger.project, save_dir=str(run_dir), offline=cfg.logger.offline,
                                      name=cfg.logger.get("name"), log_model=False)
    raise UserError(f"logger.kind={kind!r}: use wandb, csv or none")
