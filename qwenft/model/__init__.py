"""Where models and tokenizers come from: the hub, a local folder, the offline GGUF stand-in, or a tiny model."""
