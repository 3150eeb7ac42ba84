"""Model + tokenizer sources named by ``conf/model/*.yaml`` (each file's ``_target_`` is one function here).

Every source returns a :class:`Loaded`: the model in float32 (training casts with autocast), the tokenizer,
and whether the checkpoint is an Instruct model (which decides chat-template formatting downstream).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from qwenft.model.qwen_tokenizer import QWEN25_EMBEDDING_ROWS, qwen25_tokenizer

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    instruct: bool
    name: str


def _finish(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, instruct: bool, name: str) -> Loaded:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>"
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return Loaded(model=model, tokenizer=tokenizer, instruct=instruct, name=name)


def pretrained(
    name_or_path: str,
    instruct: bool,
    revision: str | None = None,
    trust_remote_code: bool = False,
    dtype: str = "float32",
) -> Loaded:
    """A hub id (``Qwen/Qwen2.5-0.5B``) or a local HF folder, such as one written by ``qwenft extend``."""
    if trust_remote_code:
        log.warning("trust_remote_code=true: code shipped with %s will run on this machine", name_or_path)
    kwargs = dict(revision=revision, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=getattr(torch, dtype), use_safetensors=True, **kwargs
    )
    return _finish(model, tokenizer, instruct, str(name_or_path))


def offline(cache_dir: str, instruct: bool = True, dtype: str = "float32") -> Loaded:
    """The offline real-weights stand-in, imported from the GGUF on first use (see ``qwenft import-gguf``)."""
    from qwenft.model.gguf_import import import_gguf

    folder = Path(cache_dir).expanduser()
    if not (folder / "model.safetensors").exists():
        import_gguf(folder)
    loaded = pretrained(str(folder), instruct=instruct, dtype=dtype)
    loaded.name = "offline:qwen2.5-coder-0.5b-instruct-q4km"
    return loaded


def tiny(
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 128,
    tie_word_embeddings: bool = True,
    instruct: bool = True,
    seed: int = 0,
    attn_implementation: str | None = None,
) -> Loaded:
    """A randomly initialised Qwen2 with Qwen2.5's real tokenizer and padded 151 936-row matrix, for tests (and,
    with Qwen2.5-0.5B's shape, for speed measurements: ``experiments/bench/gpu_throughput.py``).

    ``attn_implementation``: None is transformers' default (sdpa); ``flex_attention`` or ``flash_attention_2`` run
    packed rows without a dense mask (see ``qwenft.data.packing``)."""
    config = tiny_config(hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size,
                         tie_word_embeddings, instruct)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = [151645, 151643]
    if attn_implementation:
        model.set_attn_implementation(attn_implementation)
    return _finish(model, qwen25_tokenizer(instruct=instruct), instruct, f"tiny(tied={tie_word_embeddings})")


def tiny_config(hidden_size: int = 64, num_hidden_layers: int = 2, num_attention_heads: int = 4,
                num_key_value_heads: int = 2, intermediate_size: int = 128, tie_word_embeddings: bool = True,
                instruct: bool = True, seed: int = 0, attn_implementation: str | None = None) -> Qwen2Config:
    """The architecture of :func:`tiny` (``seed`` and ``attn_implementation`` do not change it)."""
    return Qwen2Config(
        vocab_size=QWEN25_EMBEDDING_ROWS,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=151643,
        eos_token_id=151645 if instruct else 151643,
    )


def architecture(model_cfg) -> PretrainedConfig | None:  # noqa: ANN001 - the DictConfig of conf/model/*.yaml
    """The model's architecture from its config alone (no weights read), or None where that is not known without
    loading it (an unknown source, a hub model not in the local cache, an offline model not imported yet).

    What checks of module names (``peft.target_modules``) need before the model loads.
    """
    from omegaconf import OmegaConf

    from qwenft.errors import UserError

    spec = OmegaConf.to_container(model_cfg, resolve=True)
    target = str(spec.pop("_target_", ""))
    try:
        if target.endswith("sources.tiny"):
            return tiny_config(**spec)
        if target.endswith("sources.pretrained") and not spec.get("trust_remote_code"):
            return AutoConfig.from_pretrained(spec["name_or_path"], revision=spec.get("revision"),
                                              local_files_only=True)  # a look-up, never a download
        if target.endswith("sources.offline"):
            folder = Path(str(spec["cache_dir"])).expanduser()
            return AutoConfig.from_pretrained(folder) if (folder / "config.json").is_file() else None
    except (OSError, ValueError, TypeError, KeyError, UserError):
        return None
    return None


def module_names(config: PretrainedConfig) -> dict[str, type]:
    """Every module's dotted name -> its class, for ``config``'s causal LM built on the meta device (no memory)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name: type(module) for name, module in model.named_modules() if name}
