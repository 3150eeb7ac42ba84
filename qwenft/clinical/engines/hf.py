"""The ``hf`` engine: the loaded transformers model, one batched ``generate`` per stage with the shared-prefix
prefill of ``qwenft.clinical.generate``. Works for every model: the in-memory ``tiny`` one and a model being trained.
"""

from __future__ import annotations

from qwenft.clinical.engines.base import Engine
from qwenft.clinical.generate import generate_batch
from qwenft.clinical.generation_settings import GenerationSettings


class HFEngine(Engine):
    """The loaded transformers model; ``model`` is the torch model, so callers keep the batched HF path."""

    name = "hf"
    parallel = 1

    def __init__(self, loaded) -> None:  # noqa: ANN001 - qwenft.model.sources.Loaded
        self.loaded = loaded
        self.tokenizer, self.instruct, self.label = loaded.tokenizer, loaded.instruct, loaded.name

    @property
    def model(self):  # noqa: ANN201
        return self.loaded.model

    @property
    def context_length(self) -> int | None:
        value = getattr(getattr(self.loaded.model, "config", None), "max_position_embeddings", None)
        return int(value) if isinstance(value, int) and value > 0 else None

    def complete(self, prompts: list[str], settings: GenerationSettings, counts: list | None = None) -> list[str]:
        return generate_batch(self.loaded.model, self.tokenizer, prompts, self.instruct, **vars(settings),
                              counts=counts)


class InMemory:
    """A ``Loaded``-shaped view of a model that is not from a config (the one being trained)."""

    def __init__(self, model, tokenizer, instruct: bool, name: str = "in-memory") -> None:  # noqa: ANN001
        self.model, self.tokenizer, self.instruct, self.name = model, tokenizer, instruct, name


def bf16_weights(model, bf16: bool) -> None:  # noqa: ANN001
    """Cast a CPU model this engine owns to bfloat16 when ``generation.bf16`` asks for bf16.

    Why not autocast: it re-casts every fp32 weight at every decoding step. On a 2-core AVX512-BF16 EPYC, 32 greedy
    tokens of the offline 0.5B model took 4.9 s in fp32, 7.3 s under bf16 autocast and 3.1 s with bf16 weights
    (same text). A model being trained (the clinical-eval callback) is not cast: it keeps fp32 weights.
    """
    import torch

    param = next(model.parameters(), None)
    if bf16 and param is not None and param.device.type == "cpu" and param.dtype == torch.float32:
        model.to(torch.bfloat16)
