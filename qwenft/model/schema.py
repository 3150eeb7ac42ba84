"""Schema of the ``model`` config group (``conf/model/*.yaml``, built by ``qwenft.model.sources``) and of the
``import-gguf`` verb: each key's rule and one-line doc, declared once. An option file sets only the keys its
source reads (``tiny`` the architecture, the hub options ``name_or_path``), so no key here has a default of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwenft.rules import BOOL, OPT_TEXT, SEED, TEXT, Enum, Int, setting

DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


@dataclass(kw_only=True)
class ModelSchema:
    """``model``: where the weights come from and how they load."""

    name_or_path: str = setting(rule=TEXT, doc="a hub id (Qwen/Qwen2.5-0.5B-Instruct) or a local model folder")
    revision: str | None = setting(rule=OPT_TEXT, doc="hub branch, tag or commit (null: main)")
    instruct: bool = setting(rule=BOOL, doc="the model was tuned on chat turns: prompts use its chat template")
    trust_remote_code: bool = setting(rule=BOOL, doc="run the hub repository's own Python (never by default)")
    dtype: str = setting(rule=Enum(*DTYPES), doc="dtype the weights load in")
    cache_dir: str = setting(rule=TEXT, doc="model=offline: the folder `qwenft import-gguf` writes and reads")
    hidden_size: int = setting(rule=Int(1, 65536), doc="model=tiny: width of the random Qwen2")
    num_hidden_layers: int = setting(rule=Int(1, 512), doc="model=tiny: decoder layers")
    num_attention_heads: int = setting(rule=Int(1, 1024), doc="model=tiny: query heads (divides hidden_size)")
    num_key_value_heads: int = setting(rule=Int(1, 1024), doc="model=tiny: key/value heads (divides the query "
                                                              "heads)")
    intermediate_size: int = setting(rule=Int(1, 262144), doc="model=tiny: MLP width")
    tie_word_embeddings: bool = setting(rule=BOOL, doc="model=tiny: the head shares the input embedding, as the "
                                                       "hub's Qwen2.5-0.5B does")
    seed: int = setting(rule=SEED, doc="model=tiny: seed of the random weights")
    attn_implementation: str | None = setting(rule=Enum(*ATTENTION, null=True),
                                              doc="transformers' attention kernel (null: its default, sdpa)")


@dataclass
class ImportGgufSchema:
    """``conf/import_gguf.yaml``: ``qwenft import-gguf``."""

    out: str = setting(rule=TEXT, doc="the HF folder to write (model=offline reads it)")
    force: bool = setting(False, BOOL, "import again even when the folder is complete")
