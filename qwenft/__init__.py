"""qwenft: fine-tune Qwen2.5-0.5B on text full of new words, and answer multi-question clinical prompts."""

__version__ = "0.1.0"


def _register_config_schemas() -> None:
    """Typed schemas must be in Hydra's ConfigStore before any compose (CLI, tests, notebooks)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from qwenft.hardware import cpu_precision, native_bf16
    from qwenft.tokenizer.schema import register

    register()
    demo = Path(__file__).resolve().parent / "resources" / "demo"
    if not OmegaConf.has_resolver("demo"):  # ${demo:words.txt}: a file of the bundled demo set
        OmegaConf.register_new_resolver("demo", lambda name: str(demo / name))
    if not OmegaConf.has_resolver("cpu_precision"):  # ${cpu_precision:}: bf16-mixed only where the CPU has bf16
        OmegaConf.register_new_resolver("cpu_precision", cpu_precision, use_cache=True)
    if not OmegaConf.has_resolver("first"):  # ${first:${run_dir},outputs/...}: the first value that is set
        OmegaConf.register_new_resolver("first", lambda *values: next((v for v in values if v not in (None, "")),
                                                                      None))
    if not OmegaConf.has_resolver("native_bf16"):
        OmegaConf.register_new_resolver("native_bf16", native_bf16, use_cache=True)


_register_config_schemas()
