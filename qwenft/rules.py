"""What a config key accepts (``Rule``), and the schemas' way of saying it beside each field (``setting``).

A config group's schema is a dataclass beside the code that reads the group; each field carries its rule and a
one-line doc (``setting(default, rule, doc)``), and ``qwenft.validation`` derives its per-key checks from those
fields (``rules_of``), so a setting's type, range and allowed values are written once. A nested group is a
field made by ``group(Schema)``; a rule that depends on another key (``peft.r`` on ``peft.method``) is a function
of the composed config. Code that builds an object from a group without the CLI (a library caller) runs the same
rules on it with ``check_fields``. This module imports nothing of qwenft but its error type, so any schema can use it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import ListConfig

UINT32 = 2**32 - 1


@dataclass(frozen=True)
class Rule:
    """What one key accepts. ``also``: extra allowed values outside the range (``-1`` = unlimited)."""

    kind: str  # int | float | bool | str | enum | strlist | any
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    null: bool = False
    also: tuple = ()
    check: Callable[[Any], bool] | None = None  # kind="any": a custom predicate
    text: str = ""  # kind="any": how to describe what is allowed
    nonempty: bool = False

    def describe(self) -> str:
        if self.kind == "int" or self.kind == "float":
            noun = "an integer" if self.kind == "int" else "a number"
            if self.lo is not None and self.hi is not None:
                rng = f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
            elif self.lo is not None:
                rng = f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
            elif self.hi is not None:
                rng = f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
            else:
                rng = ""
            out = f"{noun} {rng}".strip()
            if self.also:
                out += f" (or {', '.join(map(_num, self.also))})"
        elif self.kind == "bool":
            out = "true or false"
        elif self.kind == "str":
            out = "a non-empty text" if self.nonempty else "a text"
        elif self.kind == "enum":
            out = f"one of: {', '.join(dict.fromkeys(map(str, self.choices)))}"
        elif self.kind == "strlist":
            out = "a list of texts, e.g. [a,b]" + (" (non-empty)" if self.nonempty else "")
        else:
            out = self.text
        return out + (" or null" if self.null else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.null
        if self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if self.kind == "int" and not isinstance(value, int):
                return False
            if not math.isfinite(value):
                return False
            if value in self.also:
                return True
            if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
                return False
            return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str) and (bool(value.strip()) or not self.nonempty)
        if self.kind == "enum":
            return any(value == c and type(value) is type(c) or (isinstance(value, str) and str(c) == value)
                       for c in self.choices)
        if self.kind == "strlist":
            return isinstance(value, list | tuple | ListConfig) and all(isinstance(v, str) for v in value) and \
                (len(value) > 0 or not self.nonempty)
        return bool(self.check(value)) if self.check is not None else True


def _num(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    if isinstance(x, int) and x >= 10**6:
        return f"{x:_}".replace("_", " ")
    return f"{x:g}"


def text_or_texts(value: Any) -> bool:
    """A text, or a list of texts (``columns``, ``runs``)."""
    return isinstance(value, str) or (isinstance(value, list | tuple | ListConfig)
                                      and all(isinstance(v, str) for v in value))


def Int(lo: int | None = None, hi: int | None = None, **kw) -> Rule:  # noqa: N802 - reads like a type
    return Rule("int", lo, hi, **kw)


def Float(lo: float | None = None, hi: float | None = None, **kw) -> Rule:  # noqa: N802
    return Rule("float", lo, hi, **kw)


def Enum(*choices, null: bool = False) -> Rule:  # noqa: N802
    return Rule("enum", choices=choices, null=null)


BOOL = Rule("bool")
OPT_BOOL = Rule("bool", null=True)
TEXT = Rule("str", nonempty=True)
OPT_TEXT = Rule("str", null=True, nonempty=True)
TEXTS = Rule("strlist")
OPT_TEXTS = Rule("strlist", null=True)
SEED = Int(0, UINT32)
PROB = Float(0, 1, hi_open=True)


#: A rule that depends on the rest of the composed config (``cfg -> Rule``), e.g. ``peft.r`` on ``peft.method``.
RuleOf = Callable[[Any], Rule]


def setting(default: Any = dataclasses.MISSING, rule: Rule | RuleOf | None = None, doc: str = "", *,
            factory: Callable[[], Any] | None = None, schema: type | None = None) -> Any:
    """A schema field: its default (none: the key is required, or set by the option files), the ``Rule`` its
    value must meet, and what it is for (one line). ``factory`` makes a default per instance (a list, a probe);
    ``schema``: the keys of a mapping value (``tokenizer.discover``) have rules of their own."""
    if rule is None or not doc:
        raise TypeError("setting() needs a rule and a one-line doc")
    meta = {"rule": rule, "doc": doc} | ({"schema": schema} if schema is not None else {})
    if factory is None and isinstance(default, list | dict):
        factory = lambda: type(default)(default)  # noqa: E731 - a fresh copy per instance
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def group(schema: type, doc: str = "", *, key: str | None = None) -> Any:
    """A field holding a nested group (``generation.vllm``, ``tokenizer.distill``); its keys are ``name.field``.
    ``key="*"``: the group's rules hold under any name (every checkpoint callback of ``callbacks``)."""
    first = (schema.__doc__ or "").strip().split("\n\n")[0]  # the docstring's first paragraph, on one line
    meta = {"schema": schema, "doc": doc or " ".join(first.split())} | ({"key": key} if key else {})
    return dataclasses.field(default_factory=schema, metadata=meta)


def _nested(f: dataclasses.Field) -> type | None:
    if "schema" in f.metadata:
        return f.metadata["schema"]
    factory = f.default_factory
    return factory if isinstance(factory, type) and dataclasses.is_dataclass(factory) else None


def rules_of(schema: type, prefix: str = "") -> dict[str, Rule | RuleOf]:
    """``{"prefix.field": rule}`` for every field of ``schema`` that declares one; nested groups by dotted key."""
    out: dict[str, Rule | RuleOf] = {}
    for f in dataclasses.fields(schema):
        name = f.metadata.get("key", f.name)
        key = f"{prefix}.{name}" if prefix else name
        if "rule" in f.metadata:
            out[key] = f.metadata["rule"]
        if (inner := _nested(f)) is not None:
            out.update(rules_of(inner, key))
    return out


def shown(value: Any) -> str:
    """A value as an error line quotes it: YAML-like, at most 60 characters."""
    if hasattr(value, "_metadata"):  # an OmegaConf node
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=False)
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else \
        repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_fields(obj: Any, prefix: str, schema: type | None = None) -> None:
    """Raise the CLI's own line (``prefix.key=value: must be ...``) for the first field of ``obj`` that breaks its
    rule: an object built in Python, without the CLI's validation, is held to the same rules. Rules that depend on
    other keys are the CLI's business (they need the whole config)."""
    from qwenft.errors import UserError

    for f in dataclasses.fields(schema or type(obj)):
        rule = f.metadata.get("rule")
        if isinstance(rule, Rule) and not rule.accepts(value := getattr(obj, f.name)):
            raise UserError(f"{prefix}.{f.name}={shown(value)}: must be {rule.describe()}")

