"""qwenft: fine-tune Qwen2.5-0.5B on text full of new words, and answer multi-question clinical prompts."""

__version__ = "0.1.0"


def _register_config_schemas() -> None:
    """Typed schemas must be in Hydra's ConfigStore before any compose (CLI, tests, notebooks)."""
    from qwenft.tokenizer.schema import register

    register()


_register_config_schemas()
