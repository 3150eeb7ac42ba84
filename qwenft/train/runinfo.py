"""What a run records about itself (``run_info.json``): provenance next to the metrics.

A result is only worth its provenance: the git commit, package versions and the sha256 of every data file and
of the tokenizer are written beside the metrics, and given to the logger as hyper-parameters.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig

from qwenft.hardware import native_bf16

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
    from qwenft.train.export import command_line

    return {"command": command_line(), "git_commit": git_commit(), "git_dirty": git_dirty(),
            "python": platform.python_version(),
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
