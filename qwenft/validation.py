"""Every numeric and enum setting of every verb, checked on the composed config before any work starts.

Hydra composes whatever it is given: ``trainer.max_steps=abc`` reaches Lightning as a string, ``optim.lr=-1``
trains with a negative learning rate, ``data=files`` without ``data.train_path`` leaves ``???`` that ``.get``
reads as "not set". Each key has a rule (type, range, allowed values), declared once in its group's schema beside
the code that reads it (``qwenft.rules.setting``; ``RULES`` is derived from them); the first broken rule becomes
one ``UserError`` line naming the key, the value given and what is allowed, so the CLI exits 2 in a second.
What stays here: the checks that span keys (``CROSS``), the walk, and Hydra's errors made one line.

``validate(cfg, "train")`` is what the CLI runs on the composed config (``qwenft.cli``), and what library callers
of ``qwenft.config.compose`` run too (the library itself never imports this module: it sits above the schemas
it reads, so every command validates its config once, at its start). Rules apply to keys that are present, so a
group option without a key (``scheduler=constant`` has no ``min_lr_rate``) is simply not checked for it.
``hydra_error_line`` turns Hydra's own multi-line composition errors (unknown key, bad override syntax, unknown
group option) into one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from qwenft.clinical.schema import prompt_and_file
from qwenft.errors import UserError
from qwenft.rules import Rule, RuleOf, rules_of, shown


def _schemas() -> dict[str, type]:
    """Each verb's root schema; the groups' schemas are nested in them (``qwenft.rules.group``)."""
    from qwenft.clinical.schema import AnswerSchema, EvaluateSchema, ServeSchema
    from qwenft.model.schema import ImportGgufSchema
    from qwenft.report import ReportSchema
    from qwenft.tokenizer.schema import DiscoverSchema, ExtendSchema
    from qwenft.train.schema import ExportVerbSchema, TrainSchema

    return {"train": TrainSchema, "answer": AnswerSchema, "evaluate": EvaluateSchema, "serve": ServeSchema,
            "discover": DiscoverSchema, "extend": ExtendSchema, "export": ExportVerbSchema,
            "import_gguf": ImportGgufSchema, "report": ReportSchema}


#: ``{verb: {"dotted.key": rule}}``, derived from the schemas: a key's type, range and choices are declared once,
#: beside the code that reads it.
RULES: dict[str, dict[str, Rule | RuleOf]] = {verb: rules_of(schema) for verb, schema in _schemas().items()}

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
    return (f"tokenizer.{given}={shown(tok.get(given))}: tokenizer=none does not extend the vocabulary, so these "
            "words would be dropped: use tokenizer=extend to add them, or eval_words_file=PATH to score them as "
            "Qwen's own pieces")


def _discover_keys(cfg: DictConfig) -> str | None:
    from qwenft.tokenizer.schema import DiscoverArgs

    found = OmegaConf.select(cfg, "tokenizer.discover")
    known = [f.name for f in dataclasses.fields(DiscoverArgs)]
    if isinstance(found, DictConfig):
        extra = sorted(set(found) - set(known))
        if extra:
            return f"tokenizer.discover.{extra[0]}: unknown key (known: {', '.join(known)})"
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
            found.append(f"{key}={shown(value)}: must be {rule.describe()}")
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
