"""What every generation engine is (``Engine``) and how the vLLM one is set up (``VllmSettings``).

Its own module so that ``choose`` (which picks and opens an engine), ``hf`` and ``vllm`` (the vLLM engine and its
server process) all build on it without importing each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

from qwenft.clinical.generate import GenerationSettings
from qwenft.errors import UserError


class Engine(ABC):
    """One way of turning prompts into completions; a context manager that releases what it started."""

    name: str = "engine"
    parallel: int = 1

    tokenizer: object
    instruct: bool

    @abstractmethod
    def complete(self, prompts: list[str], settings: GenerationSettings, counts: list | None = None) -> list[str]:
        """One user message per prompt -> one completion per prompt, in order. ``counts`` (a list) gets
        (prompt tokens, generated tokens) per prompt appended."""

    @property
    def context_length(self) -> int | None:
        return None

    @property
    def model(self):  # noqa: ANN201 - what ``answer(parsed, strategy, model, ...)`` takes
        """What the answering functions take as ``model``: the engine itself (they call ``complete``)."""
        return self

    def close(self) -> None:  # noqa: B027 - most engines start nothing
        """Stop what this engine started (a server process); idempotent."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class VllmSettings:
    """``generation.vllm`` in ``conf/answer.yaml``, ``evaluate.yaml``, ``serve.yaml``, ``callbacks/clinical_eval``.

    ``python``: the interpreter of the vLLM environment (null: ``$QWENFT_VLLM_PYTHON``, then ``.venv-vllm`` in the
    checkout, then ``$QWENFT_CACHE/venv-vllm``, then this interpreter if it imports vllm). ``url``: a vLLM server
    that is already running (e.g. the one ``qwenft serve`` prints) instead of starting one; it must serve the same
    model folder. ``host``/``port`` of a server started here (port 0: a free one). ``kv_cache_gib``: CPU KV cache
    (``VLLM_CPU_KVCACHE_SPACE``).
    ``max_model_len``: null = the model's own context. ``parallel``: prompts ``evaluate`` keeps in flight.
    ``compile``: torch.compile the model (vLLM's default; on a CPU it doubles the start-up for ~20 % faster
    decoding), else ``--enforce-eager``.
    """

    python: str | None = None
    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    kv_cache_gib: float = 2.0
    max_model_len: int | None = None
    parallel: int = 8
    start_timeout_s: float = 900.0
    served_name: str = "qwenft"
    compile: bool = False

    @classmethod
    def from_dict(cls, values: dict | None) -> VllmSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values or {}) - known)
        if unknown:
            raise UserError(f"generation.vllm.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        return cls(**(values or {}))
