"""``qwenft import-gguf [out=DIR] [force=true]``: the offline real-weights model, dequantised once."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from qwenft.model.gguf_import import import_gguf


def run(cfg: DictConfig) -> str:
    out = Path(cfg.out).expanduser()
    if (out / "model.safetensors").exists() and not cfg.force:
        print(f"offline model already at {out} (force=true to rebuild)")
    else:
        import_gguf(out)
        print(f"offline model written to {out}")
    return str(out)
