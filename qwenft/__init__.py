"""qwenft: fine-tune Qwen2.5-0.5B on text full of new words, and answer multi-question clinical prompts."""

__version__ = "0.1.0"
