"""Each setting is declared once, in its group's schema beside the code that reads it; validation derives its
per-key rules from the schemas, and an object built in Python meets the same rules with the same line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from qwenft.errors import UserError
from qwenft.rules import Rule, rules_of

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "qwenft" / "conf"
#: keys an option file passes to the object it builds that are objects or paths themselves, not settings
NOT_SETTINGS = {"_target_", "_partial_", "defaults", "trainer.strategy", "trainer.plugins"}


def _schemas() -> dict[str, type]:
    from qwenft.validation import _schemas

    return _schemas()


def _keys(node: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v and key not in NOT_SETTINGS:
            out += _keys(v, key)
        else:
            out.append(key)
    return out


@pytest.mark.parametrize("group,verb", [("model", "train"), ("data", "train"), ("peft", "train"),
                                        ("tokenizer", "train"), ("optim", "train"), ("scheduler", "train"),
                                        ("trainer", "train"), ("strategy", "train"), ("retrieval", "answer")])
def test_every_key_of_a_groups_option_files_has_a_rule(group, verb):
    from qwenft.validation import RULES

    files = sorted((CONF / group).glob("*.yaml"))
    assert files
    for path in files:
        for full in _keys(yaml.safe_load(path.read_text()) or {}, group):
            if full in NOT_SETTINGS or full.split(".")[1] in NOT_SETTINGS:
                continue
            assert full in RULES[verb], f"{path.relative_to(ROOT)}: {full} has no rule in its group's schema"


@pytest.mark.parametrize("verb", ["train", "answer", "evaluate", "serve", "discover", "extend", "export",
                                  "import_gguf", "report"])
def test_every_key_of_a_verbs_own_file_has_a_rule(verb):
    from qwenft.validation import RULES

    tree = yaml.safe_load((CONF / f"{verb}.yaml").read_text())
    groups = {next(iter(d)) if isinstance(d, dict) else d for d in tree.get("defaults", [])}
    for key in _keys({k: v for k, v in tree.items() if k not in ("defaults", "hydra")}):
        if key.split(".")[0] in groups or key.split(".")[-1] in NOT_SETTINGS:
            continue
        assert key in RULES[verb], f"conf/{verb}.yaml: {key} has no rule in the verb's schema"


def test_validation_restates_no_type_or_range():
    text = (ROOT / "qwenft" / "validation.py").read_text()
    assert not re.search(r"\b(Int|Float|Enum|Rule)\(", text), "per-key rules belong in the schemas"


def _fields(schema: type, seen: set) -> list[tuple[type, dataclasses.Field]]:
    out = []
    for f in dataclasses.fields(schema):
        out.append((schema, f))
        inner = f.metadata.get("schema")
        if inner is not None and inner not in seen:
            seen.add(inner)
            out += _fields(inner, seen)
    return out


def test_every_schema_field_has_a_rule_and_a_one_line_doc():
    seen: set = set()
    for schema in _schemas().values():
        for owner, f in _fields(schema, seen):
            where = f"{owner.__module__}.{owner.__name__}.{f.name}"
            assert "rule" in f.metadata or "schema" in f.metadata, f"{where}: neither a setting nor a group"
            doc = f.metadata.get("doc", "")
            assert doc and "\n" not in doc and len(doc) <= 120, f"{where}: needs a one-line doc"
            rule = f.metadata.get("rule")
            assert rule is None or isinstance(rule, Rule) or callable(rule), where


def test_a_schema_default_meets_its_own_rule():
    seen: set = set()
    for schema in _schemas().values():
        for owner, f in _fields(schema, seen):
            rule = f.metadata.get("rule")
            if not isinstance(rule, Rule):
                continue
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            if default is not dataclasses.MISSING:
                assert rule.accepts(default), f"{owner.__name__}.{f.name}={default!r} breaks {rule.describe()}"


@pytest.mark.parametrize("override,build", [
    ("strategy.scope=sideways", lambda: __import__("qwenft.clinical.strategies", fromlist=["x"]).StepBack(
        scope="sideways")),
    ("peft.dropout=1.5", lambda: __import__("qwenft.adapters.schema", fromlist=["x"]).PeftSpec(dropout=1.5)),
    ("callbacks.clinical_eval.generation.max_new_tokens=0", lambda: __import__(
        "qwenft.clinical.generation_settings", fromlist=["x"]).GenerationSettings(max_new_tokens=0)),
])
def test_the_library_and_the_cli_give_the_same_line(override, build):
    from qwenft.config import compose
    from qwenft.validation import validate

    with pytest.raises(UserError) as cli:
        validate(compose("train", ["model=tiny", "tokenizer=none", override]), "train")
    with pytest.raises(UserError) as lib:
        build()
    key = override.split("=")[0].rsplit(".", 2)
    assert str(cli.value).split(": must be")[1] == str(lib.value).split(": must be")[1]
    assert str(lib.value).startswith(f"{key[-2]}.{key[-1]}=") or str(lib.value).startswith(key[-1])


def test_a_rule_can_depend_on_another_key():
    from qwenft.config import compose
    from qwenft.validation import problems

    # r: 0 is a full fine-tune's rank, and no LoRA's
    assert not problems(compose("train", ["model=tiny", "tokenizer=none", "peft=full"]), "train")
    found = problems(compose("train", ["model=tiny", "tokenizer=none", "peft.r=0"]), "train")
    assert found == ["peft.r=0: must be an integer in [1, 4096]"]


def test_nested_and_wildcard_groups_give_dotted_keys():
    from qwenft.train.schema import TrainSchema

    rules = rules_of(TrainSchema)
    assert "tokenizer.discover.min_count" in rules and "tokenizer.discover" in rules
    assert "callbacks.*.save_top_k" in rules and "callbacks.clinical_eval.generation.vllm.port" in rules
