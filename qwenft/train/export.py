"""End-of-run outputs: adapter, tokenizer and a merged full model, each written atomically.

The merged model is what ``transformers.pipeline``, vLLM (which cannot load trainable-token adapters) and a
plain ``from_pretrained`` read: adapters and trained rows folded in, tied embeddings kept tied, safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import PeftModel, PeftType

from qwenft.atomic import atomic_dir
from qwenft.peft.apply import merged_model
from qwenft.tokenizer.extend import MANIFEST


def _is_lora(model) -> bool:
    return isinstance(model, PeftModel) and any(c.peft_type == PeftType.LORA for c in model.peft_config.values())


def export(model, tokenizer, run_dir: Path, manifest: dict | None, adapter: bool = True) -> dict[str, str]:
    out: dict[str, str] = {}
    with atomic_dir(run_dir / "tokenizer") as tmp:
        tokenizer.save_pretrained(tmp)
    out["tokenizer"] = str(run_dir / "tokenizer")
    if adapter and _is_lora(model):  # full FT's trainable-token wrapper alone would be a misleading "adapter"
        with atomic_dir(run_dir / "adapter") as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
        out["adapter"] = str(run_dir / "adapter")
    merged = merged_model(model).eval()
    with atomic_dir(run_dir / "merged") as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if manifest:
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    out["merged"] = str(run_dir / "merged")
    return out
