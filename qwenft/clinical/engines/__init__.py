"""Where the texts of a clinical prompt are generated (``generation.engine: auto | hf | vllm``).

``base`` says what every engine is, ``hf`` and ``vllm`` are the two engines, ``choose`` picks and opens the one a
config asks for. Callers import from here.
"""

from qwenft.clinical.engines.base import Engine
from qwenft.clinical.engines.choose import (
    EngineChoice,
    cache_settings,
    decoding,
    model_folder,
    open_engine,
    open_engine_for_model,
    resolve,
)
from qwenft.clinical.engines.hf import HFEngine, bf16_weights
from qwenft.clinical.generation_settings import ENGINES, VllmSettings

__all__ = ["ENGINES", "Engine", "EngineChoice", "HFEngine", "VllmSettings", "bf16_weights", "cache_settings",
           "decoding", "model_folder", "open_engine", "open_engine_for_model", "resolve"]
