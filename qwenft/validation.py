"""Every numeric and enum setting of every verb, checked on the composed config before any work starts.

Hydra composes whatever it is given: ``trainer.max_steps=abc`` reaches Lightning as a string, ``optim.lr=-1``
trains with a negative learning rate, ``data=files`` without ``data.train_path`` leaves ``???`` that ``.get``
reads as "not set". Each key here has a rule (type, range, allowed values); the first broken rule becomes one
``UserError`` line naming the key, the value given and what is allowed, so the CLI exits 2 in a second.

``validate(cfg, "train")`` is what the CLI runs on the composed config (``qwenft.cli``), and what library callers
of ``qwenft.config.compose`` can run too; ``train()`` runs it itself. Rules apply to keys that are present, so a
group option without a key (``scheduler=constant`` has no ``min_lr_rate``) is simply not checked for it.
``hydra_error_line`` turns Hydra's own multi-line composition errors (unknown key, bad override syntax, unknown
group option) into one line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from qwenft.errors import UserError
from qwenft.rules import (
    BOOL,
    OPT_BOOL,
    OPT_TEXT,
    OPT_TEXTS,
    PROB,
    SEED,
    TEXT,
    TEXTS,
    Enum,
    Float,
    Int,
    Rule,
    rules_of,
)
from qwenft.tokenizer.schema import TokenizerConfig


def _is_texts_or_text(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list | ListConfig) and all(isinstance(x, str) for x in v))


def _data_files(v: Any) -> bool:
    """``data.data_files`` as ``datasets.load_dataset`` takes it: a path, a list of paths, or split -> path(s)."""
    def files(x: Any) -> bool:
        return (isinstance(x, str) and bool(x)) or (isinstance(x, list | ListConfig) and bool(x)
                                                    and all(isinstance(y, str) and y for y in x))
    return files(v) or (isinstance(v, dict | DictConfig) and bool(v) and all(files(x) for x in v.values()))


def _is_mapping_of_texts(v: Any) -> bool:
    return isinstance(v, dict | DictConfig) and all(isinstance(x, str) and x for x in v.values())


def _val_interval(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1
    return isinstance(v, float) and 0 < v <= 1


def _devices(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1 or v == -1
    if isinstance(v, str):
        return v == "auto" or v == "-1" or bool(re.fullmatch(r"\d+(,\s*\d+)*,?", v.strip()))
    return isinstance(v, list | ListConfig) and len(v) > 0 and all(isinstance(x, int) and x >= 0 for x in v)


def _betas(v: Any) -> bool:
    return isinstance(v, list | ListConfig) and len(v) == 2 and all(
        isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in v)


PRECISIONS = (64, 32, 16, "64", "32", "16", "bf16", "transformer-engine", "transformer-engine-float16", "16-true",
              "16-mixed", "bf16-true", "bf16-mixed", "32-true", "64-true")

GENERATION = {
    "max_new_tokens": Int(1, 32768),
    "do_sample": BOOL,
    "temperature": Float(0, 100, lo_open=True),
    "top_p": Float(0, 1, lo_open=True),
    "seed": SEED,
    "bf16": BOOL,
    "engine": Enum("auto", "hf", "vllm"),  # qwenft.clinical.engines
    "vllm.python": OPT_TEXT, "vllm.url": OPT_TEXT, "vllm.port": Int(0, 65535),
    "vllm.kv_cache_gib": Float(0, 1e6, lo_open=True), "vllm.max_model_len": Int(16, 10**7, null=True),
    "vllm.parallel": Int(1, 1024), "vllm.start_timeout_s": Float(1, 1e6), "vllm.served_name": TEXT,
    "vllm.compile": BOOL, "vllm.host": TEXT,
}

MODEL = {
    "model.name_or_path": TEXT, "model.revision": OPT_TEXT, "model.instruct": BOOL, "model.trust_remote_code": BOOL,
    "model.dtype": Enum("float32", "bfloat16", "float16"), "model.cache_dir": TEXT,
    "model.hidden_size": Int(1, 65536), "model.num_hidden_layers": Int(1, 512),
    "model.num_attention_heads": Int(1, 1024), "model.num_key_value_heads": Int(1, 1024),
    "model.intermediate_size": Int(1, 262144), "model.tie_word_embeddings": BOOL, "model.seed": SEED,
    "model.attn_implementation": Enum("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3",
                                      null=True),
}


def _schemas() -> tuple:
    from qwenft.data.io import SCHEMAS  # another schema added there is accepted here too

    return ("auto", *SCHEMAS)


def _data_schema(cfg: DictConfig) -> Rule:
    return Enum(*_schemas(), null=True)


DATA = {
    "data.train_path": OPT_TEXT, "data.val_path": OPT_TEXT, "data.test_path": OPT_TEXT,
    "data.heldout_text": OPT_TEXT,
    "data.schema": _data_schema,
    "data.columns": Rule("any", null=True, check=_is_mapping_of_texts,
                         text="a mapping of canonical name to column name, e.g. {prompt: question}"),
    "data.skip_bad_rows": BOOL,
    "data.max_chars": Int(1, null=True),
    "data.max_length": Int(8, 1 << 20),
    "data.overlong": Enum("truncate", "drop"),
    "data.batch_size": Int(1, 1 << 16),
    "data.packing": Rule("any", check=lambda v: v is True or v is False or v == "auto", text="true, false or auto"),
    "data.text_path": OPT_TEXT,
    "data.text_unit": Enum("line", "paragraph", "document"),
    "data.max_val_examples": Int(0, null=True),
    "data.data_files": Rule("any", null=True, check=_data_files,
                            text="a file, a list of files, or {split: file(s)} for datasets.load_dataset"),
    "data.tokens_per_batch": Int(8, 1 << 30, null=True),
    "data.pack_length": Int(8, 1 << 30, null=True),
    "data._required_": Rule("strlist"),
}

OPTIM = {
    "optim.lr": Float(0, 10, lo_open=True),
    "optim.weight_decay": Float(0, 10),
    "optim.eps": Float(0, 1, lo_open=True),
    "optim.betas": Rule("any", check=_betas, text="two numbers in [0, 1), e.g. [0.9,0.999]"),
    "optim.momentum": Float(0, 1, hi_open=True),
}

SCHEDULER = {
    "scheduler.num_warmup_steps": Int(0, 10**9),
    "scheduler.min_lr_rate": Float(0, 1),
    "scheduler.num_cycles": Float(0, 1000, lo_open=True),
}


def _peft_r(cfg: DictConfig) -> Rule:
    return Int(1, 4096) if OmegaConf.select(cfg, "peft.method") == "lora" else Int(0, 4096)


def _peft_alpha(cfg: DictConfig) -> Rule:
    return Float(0, 1e6, lo_open=True) if OmegaConf.select(cfg, "peft.method") == "lora" else Float(0, 1e6)


PEFT = {
    "peft.method": Enum("lora", "full"),
    "peft.r": _peft_r,
    "peft.alpha": _peft_alpha,
    "peft.dropout": PROB,
    "peft.target_modules": OPT_TEXTS,
}

TOKENIZER = {  # types, ranges and choices from the group's schema, beside the code that reads it
    **rules_of(TokenizerConfig, "tokenizer"),
    "tokenizer.discover.min_count": Int(1, 10**9),  # a mapping of qwenft.tokenizer.discover.discover_words' args
    "tokenizer.discover.max_words": Int(1, 10**6),
    "tokenizer.discover.min_length": Int(1, 1000),
}

TRAINER = {
    "trainer.accelerator": Rule("any", check=lambda v: isinstance(v, DictConfig) or v in (
        "cpu", "gpu", "cuda", "mps", "tpu", "hpu", "auto"), text="one of: cpu, gpu, cuda, mps, tpu, hpu, auto"),
    "trainer.devices": Rule("any", check=_devices, text="an integer >= 1, -1 (all), auto, or a list of ids"),
    "trainer.num_nodes": Int(1, 100000),
    "trainer.precision": Enum(*PRECISIONS),
    "trainer.max_steps": Int(1, 10**12, also=(-1,)),
    "trainer.max_epochs": Int(1, 10**9, also=(-1,), null=True),
    "trainer.min_steps": Int(0, 10**12, null=True),
    "trainer.val_check_interval": Rule("any", null=True, check=_val_interval,
                                       text="an integer >= 1 (batches) or a fraction in (0, 1]"),
    "trainer.check_val_every_n_epoch": Int(1, 10**9, null=True),
    "trainer.num_sanity_val_steps": Int(-1, 10**9),
    "trainer.accumulate_grad_batches": Int(1, 1 << 16),
    "trainer.gradient_clip_val": Float(0, 1e9, null=True),
    "trainer.gradient_clip_algorithm": Enum("norm", "value", null=True),
    "trainer.log_every_n_steps": Int(1, 10**9),
    "trainer.deterministic": Rule("any", null=True, check=lambda v: isinstance(v, bool) or v == "warn",
                                  text="true, false or warn"),
    "trainer.use_distributed_sampler": BOOL,
    "trainer.enable_checkpointing": OPT_BOOL,
    "trainer.limit_train_batches": Rule("any", null=True, check=_val_interval,
                                        text="an integer >= 1 (batches) or a fraction in (0, 1]"),
    "trainer.limit_val_batches": Rule("any", null=True, check=lambda v: v == 0 or _val_interval(v),
                                      text="0, an integer >= 1 (batches) or a fraction in (0, 1]"),
}

CALLBACKS = {
    "callbacks.*.every_n_train_steps": Int(0, 10**9, null=True),
    "callbacks.*.save_top_k": Int(-1, 10**6),
    "callbacks.*.mode": Enum("min", "max"),
    "callbacks.*.monitor": OPT_TEXT,
    "callbacks.*.save_last": Rule("any", null=True, check=lambda v: isinstance(v, bool) or v == "link",
                                  text="true, false or link"),
    "callbacks.new_word_metrics.max_texts": Int(0, 10**6),
    "callbacks.clinical_eval.n_prompts": Int(0, 10**5),
    "callbacks.lr_monitor.logging_interval": Enum("step", "epoch", null=True),
    **{f"callbacks.clinical_eval.generation.{k}": r for k, r in GENERATION.items()},
}

STRATEGY = {
    "strategy.name": TEXT,
    "strategy.n_queries": Int(1, 32),
    "strategy.rrf_k": Int(0, 10**6),
    "strategy.rewrite_max_new_tokens": Int(1, 4096),
    "strategy.keep_original": BOOL,
    "strategy.rewrite_prompt": Rule("str"),
    "strategy.query_template": Rule("str"),
}

RETRIEVAL = {
    "retrieval.kb_path": TEXT, "retrieval.cache_dir": TEXT, "retrieval.model_path": OPT_TEXT,
    "retrieval.batch_size": Int(1, 1 << 16), "retrieval.rrf_k": Int(0, 10**6), "retrieval.depth": Int(1, 10**5),
    "retrieval.stopwords": OPT_TEXT,
}

EXPORT = {
    "export.enabled": BOOL, "export.adapter": BOOL, "export.checkpoint": Enum("last", "best"),
    "export.push_to_hub": BOOL, "export.hub_repo_id": OPT_TEXT, "export.private": BOOL,
    "export.wandb_artifact": BOOL, "export.license": OPT_TEXT,
}

LOGGER = {
    "logger.wandb.offline": BOOL, "logger.wandb.log_model": Rule("any", check=lambda v: isinstance(v, bool) or
                                                                 v == "all", text="true, false or all"),
    "logger.wandb.resume": Enum("allow", "must", "never", "auto", null=True),
}


def _strategy_names() -> tuple[str, ...]:
    from qwenft.config import conf_dir

    return tuple(sorted(p.stem for p in (conf_dir() / "strategy").glob("*.yaml")))


def _strategies(cfg: DictConfig) -> Rule:
    names = _strategy_names()
    return Rule("any", check=lambda v: (isinstance(v, str) and v in names) or (
        isinstance(v, list | ListConfig) and len(v) > 0 and all(isinstance(x, str) and x in names for x in v)),
        text=f"a list of strategy names from: {', '.join(names)}")


def _budgets(cfg: DictConfig) -> Rule:
    names = ("per_question", "per_prompt")
    return Rule("any", check=lambda v: (isinstance(v, str) and v in names) or (
        isinstance(v, list | ListConfig) and len(v) > 0 and all(x in names for x in v)),
        text="a list from: per_question, per_prompt")


RULES: dict[str, dict[str, Rule | Callable[[DictConfig], Rule]]] = {
    "train": {
        "seed": SEED, "run_dir": OPT_TEXT, "ckpt_path": OPT_TEXT, "validate_before": BOOL, "objective": TEXT,
        "eval_words_file": OPT_TEXT, "gradient_checkpointing": BOOL, "log_text": BOOL, "allow_data_change": BOOL,
        "compile": BOOL, "frozen_dtype": Enum("auto", "float32", "bfloat16"),
        "head_loss": Enum("dense", "chunked", "liger", "auto"), "head_loss_chunk": Int(1, 1 << 24),
        **MODEL, **DATA, **OPTIM, **SCHEDULER, **PEFT, **TOKENIZER, **TRAINER, **CALLBACKS, **STRATEGY, **EXPORT,
        **LOGGER,
    },
    "answer": {
        "prompt": Rule("any", null=True, check=lambda v: isinstance(v, str | int | float | bool), text="a text"),
        "prompt_file": OPT_TEXT, "output": Enum("json", "text"),
        "k": Int(0, 100), "budget": Enum("per_question", "per_prompt"), "max_questions": Int(1, 1000),
        **{f"generation.{k}": r for k, r in GENERATION.items()}, **MODEL, **STRATEGY, **RETRIEVAL,
    },
    "evaluate": {
        "data_path": TEXT, "words_file": OPT_TEXT, "n_prompts": Int(0, 10**6, null=True),
        "strategies": _strategies, "budgets": _budgets, "k": Int(0, 100), "log_text": BOOL, "out": TEXT,
        "retrieval_only": BOOL, "progress": BOOL, "reference_strategy": OPT_TEXT,
        "bootstrap.n_resamples": Int(1, 10**6), "bootstrap.confidence": Float(0, 1, lo_open=True, hi_open=True),
        "bootstrap.seed": SEED,
        **{f"generation.{k}": r for k, r in GENERATION.items()}, **MODEL, **STRATEGY, **RETRIEVAL,
    },
    "serve": {
        "host": TEXT, "port": Int(0, 65535), "k": Int(0, 100), "budget": Enum("per_question", "per_prompt"),
        "max_questions": Int(1, 1000), "max_request_kb": Int(1, 1 << 20),
        "body_timeout_s": Float(0, 3600, lo_open=True),
        **{f"generation.{k}": r for k, r in GENERATION.items()}, **MODEL, **STRATEGY, **RETRIEVAL,
    },
    "discover": {
        "corpus": TEXT, "columns": Rule("any", null=True, check=_is_texts_or_text, text="a column name or a list"),
        "tokenizer_path": OPT_TEXT, "min_count": Int(1, 10**9), "max_words": Int(1, 10**6),
        "min_length": Int(1, 1000), "out": TEXT,
    },
    "extend": {"seed": SEED, "out": TEXT, "eval_text": OPT_TEXT, "corpus": OPT_TEXT, **MODEL, **TOKENIZER},
    "export": {"run_dir": TEXT, "checkpoint": Enum("last", "best"), "push_to_hub": OPT_BOOL},
    "import_gguf": {"out": TEXT, "force": BOOL},
    "report": {
        "runs": Rule("any", check=lambda v: _is_texts_or_text(v) and len(v) > 0, text="a run folder or a list"),
        "group_by": TEXTS, "metrics": Rule("strlist", nonempty=True), "history_metric": OPT_TEXT,
        "digits": Int(0, 12), "plots": BOOL, "out": TEXT,
    },
}

#: What to tell a user about a required (``???``) key.
REQUIRED_HINTS = {
    "data.train_path": "data=files trains on your own files: set data.train_path=FILE (and data.val_path=FILE)",
    "corpus": "set corpus=FILE (.txt, .jsonl, .json, .csv, .parquet or a saved dataset folder)",
    "run_dir": "give the run folder: qwenft export RUN_DIR",
}


# ------------------------------------------------------------------------------------------- cross-key checks


def _never_stops(cfg: DictConfig) -> str | None:
    steps, epochs = OmegaConf.select(cfg, "trainer.max_steps"), OmegaConf.select(cfg, "trainer.max_epochs")
    if steps == -1 and epochs in (-1, None):
        return ("trainer.max_steps=-1 with trainer.max_epochs=-1 never stops: set trainer.max_steps=N (>= 1) "
                "or trainer.max_epochs=N (>= 1)")
    return None


def _no_words(cfg: DictConfig) -> str | None:
    tok = cfg.get("tokenizer")
    if not isinstance(tok, DictConfig) or not tok.get("extend"):
        return None
    if tok.get("discover") or tok.get("words") or tok.get("words_file"):
        return None
    return "no new words: set tokenizer.words=[...] or tokenizer.words_file=PATH (or tokenizer=none)"


def _words_without_extension(cfg: DictConfig) -> str | None:
    """``tokenizer=none`` with words: they were dropped without a word. Scored as Qwen's pieces only through
    ``eval_words_file`` (the ablations' way), so without it the words would do nothing at all."""
    tok = cfg.get("tokenizer")
    if not isinstance(tok, DictConfig) or tok.get("extend") is not False or cfg.get("eval_words_file"):
        return None
    given = next((k for k in ("words", "words_file", "discover") if tok.get(k)), None)
    if given is None:
        return None
    return (f"tokenizer.{given}={_shown(tok.get(given))}: tokenizer=none does not extend the vocabulary, so these "
            "words would be dropped: use tokenizer=extend to add them, or eval_words_file=PATH to score them as "
            "Qwen's own pieces")


def _discover_keys(cfg: DictConfig) -> str | None:
    found = OmegaConf.select(cfg, "tokenizer.discover")
    if isinstance(found, DictConfig):
        extra = sorted(set(found) - {"min_count", "max_words", "min_length"})
        if extra:
            return f"tokenizer.discover.{extra[0]}: unknown key (known: min_count, max_words, min_length)"
    return None


def _tiny_heads(cfg: DictConfig) -> str | None:
    m = cfg.get("model")
    if not isinstance(m, DictConfig) or "num_attention_heads" not in m:
        return None
    h, a, kv = m.get("hidden_size"), m.get("num_attention_heads"), m.get("num_key_value_heads")
    if isinstance(h, int) and isinstance(a, int) and a > 0 and h % a:
        return f"model.hidden_size={h} must be a multiple of model.num_attention_heads={a}"
    if isinstance(a, int) and isinstance(kv, int) and kv > 0 and a % kv:
        return f"model.num_attention_heads={a} must be a multiple of model.num_key_value_heads={kv}"
    return None


def _val_without_train(cfg: DictConfig) -> str | None:
    d = cfg.get("data")
    if not isinstance(d, DictConfig) or OmegaConf.is_missing(d, "train_path") or d.get("train_path"):
        return None
    given = [k for k in ("val_path", "test_path", "text_path") if d.get(k)]
    if given:
        return (f"data.{given[0]} is set but data.train_path is not: that would train on the bundled demo; "
                f"set data.train_path=FILE too (data=files)")
    return None


def prompt_and_file(cfg: DictConfig) -> str | None:
    """``prompt=`` and ``prompt_file=`` together: one of them would be ignored (``qwenft.clinical.answer``)."""
    if cfg.get("prompt") is not None and cfg.get("prompt_file") is not None:
        return (f"prompt= and prompt_file={cfg.get('prompt_file')} are both set: give one of them (or neither, "
                "and pipe the prompt on stdin)")
    return None


def _token_budget(cfg: DictConfig) -> str | None:
    """Every example (at most data.max_length tokens) must fit in a batch, and in a packed row."""
    d = cfg.get("data")
    if not isinstance(d, DictConfig):
        return None
    budget, row, longest = d.get("tokens_per_batch"), d.get("pack_length"), d.get("max_length")
    if not isinstance(longest, int):
        return None
    if isinstance(budget, int) and budget < longest:
        return f"data.tokens_per_batch={budget}: must be >= data.max_length={longest} (the longest example)"
    if isinstance(row, int) and row < longest:
        return f"data.pack_length={row}: must be >= data.max_length={longest} (the longest example)"
    if isinstance(row, int) and isinstance(budget, int) and row > budget:
        return f"data.pack_length={row}: must be <= data.tokens_per_batch={budget}"
    return None


def _liger_here(cfg: DictConfig) -> str | None:
    """head_loss=liger needs CUDA and the package: refused before the model loads, not at the first step."""
    if cfg.get("head_loss") != "liger":
        return None
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu"))
    if accelerator not in ("gpu", "cuda", "auto"):
        return f"head_loss=liger: needs a CUDA device (trainer.accelerator={accelerator}); use head_loss=chunked"
    import importlib.util

    if importlib.util.find_spec("liger_kernel") is None:
        return "head_loss=liger: liger-kernel is not installed (pip install liger-kernel); use head_loss=chunked"
    return None


CROSS: dict[str, list[Callable[[DictConfig], str | None]]] = {
    "train": [_never_stops, _no_words, _words_without_extension, _discover_keys, _tiny_heads, _val_without_train,
              _token_budget, _liger_here],
    "extend": [_no_words, _tiny_heads],
    "answer": [_tiny_heads, prompt_and_file],
    "evaluate": [_tiny_heads],
}


# ---------------------------------------------------------------------------------------------- the walk


def _leaves(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of every leaf (lists are leaves), without resolving anything."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if key == "hydra":
                continue
            out.append(key)
            if isinstance(v, dict):
                out += _leaves(v, key)
    return out


def _at(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _matches(pattern: str, key: str) -> bool:
    p, k = pattern.split("."), key.split(".")
    return len(p) == len(k) and all(a == "*" or a == b for a, b in zip(p, k, strict=True))


def _rule_for(rules: dict, key: str, cfg: DictConfig) -> Rule | None:
    rule = rules.get(key)
    if rule is None:
        rule = next((r for pat, r in rules.items() if "*" in pat and _matches(pat, key)), None)
    return rule(cfg) if callable(rule) and not isinstance(rule, Rule) else rule


def _shown(value: Any) -> str:
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=False)
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else \
        repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problems(cfg: DictConfig, config_name: str) -> list[str]:
    """Every problem of ``cfg`` (the composed root config ``config_name``), one line each, in key order."""
    rules = RULES.get(config_name, {})
    found: list[str] = []
    tree = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    missing = [k for k in _leaves(tree) if _at(tree, k) == "???"]  # OmegaConf.missing_keys resolves everything
    for key in _leaves(tree):  # `_required_: [name, ...]` in an option file: keys that option cannot go without
        if key.rsplit(".", 1)[-1] == "_required_" and isinstance(_at(tree, key), list):
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            for name in _at(tree, key):
                full = f"{parent}.{name}" if parent else str(name)
                if _at(tree, full) in (None, "") and full not in missing:
                    missing.append(full)
    for key in missing:
        hint = REQUIRED_HINTS.get(key, f"set {key}=...")
        found.append(f"{key} is required and has no value: {hint}")
    for key in _leaves(tree):
        if key in missing:
            continue
        rule = _rule_for(rules, key, cfg)
        if rule is None:
            continue
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except Exception as err:  # an interpolation that cannot resolve (yet)
            text = str(err)
            if "hydra" in text.lower() or "HydraConfig" in text:
                continue  # ${hydra:...} resolves only inside Hydra's run; checked again there
            found.append(f"{key}: cannot resolve its value: {text.splitlines()[0]}")
            continue
        if isinstance(value, DictConfig) and rule.kind != "any":
            continue  # a sub-config (e.g. an object built with _target_) is not this rule's business
        if not rule.accepts(value):
            found.append(f"{key}={_shown(value)}: must be {rule.describe()}")
    for cross in CROSS.get(config_name, []):
        try:
            problem = cross(cfg)
        except Exception:  # noqa: BLE001 - a cross-check never hides the per-key problems
            problem = None
        if problem:
            found.append(problem)
    return found


def validate(cfg: DictConfig, config_name: str) -> DictConfig:
    """Raise one ``UserError`` line for the first problem (naming how many more there are); return ``cfg``."""
    found = problems(cfg, config_name)
    if found:
        more = f" (and {len(found) - 1} more: {'; '.join(found[1:3])}{'; ...' if len(found) > 3 else ''})" \
            if len(found) > 1 else ""
        raise UserError(found[0] + more)
    return cfg


# -------------------------------------------------------------------------------- Hydra's errors, one line

_GROUP_HINTS = {
    "optim.scheduler": "the learning-rate schedule is its own config group: use scheduler={value} "
                       "(linear, cosine or constant; scheduler.num_warmup_steps=N sets the warm-up)",
    "optim.num_warmup_steps": "the warm-up belongs to the scheduler group: use scheduler.num_warmup_steps={value}",
}


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    keep = []
    for ln in lines:
        if ln.startswith(("Config search path", "provider=", "See https://hydra.cc", "Set the environment variable")):
            break
        keep.append(ln)
    return " ".join(keep) or type(text).__name__


def _bad_override(overrides: list[str]) -> tuple[str, str] | None:
    """The first override Hydra's grammar rejects, with the parser's message."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for ov in overrides:
        try:
            parser.parse_overrides([ov])
        except Exception as err:  # noqa: BLE001 - OverrideParseException and friends
            return ov, _one_line(str(err))
    return None


def hydra_error_line(err: BaseException, overrides: list[str] | None = None) -> str:
    """One line for a Hydra/OmegaConf composition error (the message Hydra prints spans several lines)."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

    overrides = list(overrides or [])
    if isinstance(err, OverrideParseException):
        bad = _bad_override(overrides)
        if bad:
            return (f"cannot parse override {bad[0]!r}: {bad[1]} (write key=value; quote values with spaces or "
                    "brackets)")
        return f"cannot parse the overrides: {_one_line(str(err))}"
    if isinstance(err, MissingConfigException):
        text = str(err)
        m = re.search(r"Could not find '([^']+)'", text)
        options = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], flags=re.M)
        if m and "/" in m.group(1):
            group, _, name = m.group(1).rpartition("/")
            return f"{group}={name}: no such option" + (f"; choose one of: {', '.join(options)}" if options else "")
        if m:
            return f"config {m.group(1)!r} not found" + (f"; choose one of: {', '.join(options)}" if options else "")
        return _one_line(text)
    empty = next((ov for ov in overrides if "=" in ov and not ov.split("=", 1)[0].strip("+~ ")), None)
    if empty is not None:
        return f"cannot parse override {empty!r}: the key before '=' is empty"
    m = re.search(r"Ambiguous value for argument '([^']+)'", str(err))
    if m:
        key = m.group(1).split("=", 1)[0]
        return (f"{m.group(1)}: a comma-separated value is a sweep: add -m (--multirun) to run one job per value, "
                f"or write {key}=[...] for a list, or quote it for a text")
    cause = err.__cause__ if err.__cause__ is not None else err
    if isinstance(cause, ConfigKeyError | ValidationError | OmegaConfBaseException) and \
            getattr(cause, "full_key", None):
        key = str(cause.full_key)
        msg = (getattr(cause, "msg", None) or str(cause)).strip().splitlines()[0]
        given = next((ov.split("=", 1)[1] for ov in overrides if ov.lstrip("+~").split("=", 1)[0] == key
                      and "=" in ov), None)
        if "not in struct" in msg or "Missing key" in msg:
            if key in _GROUP_HINTS:
                return f"{key}: no such key; " + _GROUP_HINTS[key].format(value=given or "...")
            parent = getattr(cause, "parent_node", None)
            siblings = [str(k) for k in parent.keys()] if isinstance(parent, DictConfig) else []
            leaf = key.rsplit(".", 1)[-1]
            close = difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6)
            where = key.rsplit(".", 1)[0] if "." in key else "the config"
            hint = f"; did you mean {' or '.join(close)}?" if close else \
                (f"; keys of {where}: {', '.join(siblings[:15])}" if siblings else "")
            return f"{key}: no such key{hint} (+{key}=VALUE adds a new key)"
        return f"{key}" + (f"={given}" if given is not None else "") + f": {_one_line(msg)}"
    return _one_line(str(err))


def writable_dir_problem(path: str | Path) -> str | None:
    """Why ``path`` (a folder to be created or written into) cannot be written, or None. Checks the nearest
    existing ancestor with ``os.access`` (honours read-only mounts even for root) and writes nothing."""
    import os

    path = Path(path).expanduser()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        try:
            st = os.statvfs(probe)
            if st.f_flag & os.ST_RDONLY:
                return f"{probe} is on a read-only filesystem"
        except OSError:
            pass
        return f"{probe} is not writable (permission denied)"
    return None
