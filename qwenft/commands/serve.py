"""``qwenft serve [model=...] [strategy=...] [retrieval=...] [port=8000] [generation.vllm.port=8001]``.

The model behind vLLM's OpenAI-compatible API and the clinical pipeline as ``POST /answer`` (JSON in, JSON out),
both on 127.0.0.1 by default; both URLs are printed once they listen. SIGTERM / SIGINT stop both (exit 0).
"""

from __future__ import annotations

from omegaconf import DictConfig

from qwenft.clinical.server import serve


def run(cfg: DictConfig) -> None:
    serve(cfg)
