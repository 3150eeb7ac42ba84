"""What every generation engine is (``Engine``) (its settings: ``qwenft.clinical.generation_settings``).

Its own module so that ``choose`` (which picks and opens an engine), ``hf`` and ``vllm`` (the vLLM engine and its
server process) all build on it without importing each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from qwenft.clinical.generation_settings import GenerationSettings


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
