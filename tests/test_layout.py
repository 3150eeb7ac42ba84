"""The layout the design promises: the library never imports the CLI, subpackages import each other without
cycles, every verb has its thin command module and root config, and configs ship inside the package."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import networkx as nx
import pytest

from qwenft.cli import VERBS
from qwenft.config import conf_dir

PKG = Path(__file__).resolve().parents[1] / "qwenft"
FRONT = {"cli", "commands"}  # what may import the library, never the other way round


def _imports() -> dict[str, set[str]]:
    """Every ``qwenft.*`` module each qwenft module imports, lazily inside functions included."""
    out: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        mod = ".".join(("qwenft", *path.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qwenft"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("qwenft")}
        out[mod] = found
    return out


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "qwenft"


def test_library_never_imports_the_cli_or_commands():
    offenders = {m: sorted(i for i in deps if _area(i) in FRONT)
                 for m, deps in _imports().items() if _area(m) not in FRONT}
    assert not {m: d for m, d in offenders.items() if d}


def test_no_import_cycles_between_subpackages():
    graph = nx.DiGraph()
    for mod, deps in _imports().items():
        for dep in deps:
            a, b = _area(mod), _area(dep)
            if a != b and "qwenft" not in (a, b):
                graph.add_edge(a, b)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"subpackage import cycles: {cycles}"


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_verb_is_a_thin_command_over_a_shipped_root_config(verb):
    config, module = VERBS[verb]
    assert (conf_dir() / f"{config}.yaml").is_file()
    assert module == f"qwenft.commands.{config}" and callable(importlib.import_module(module).run)
    assert len((PKG / "commands" / f"{config}.py").read_text().splitlines()) < 80


def test_conf_groups_live_inside_the_package():
    assert conf_dir().is_relative_to(PKG)
    assert {"model", "tokenizer", "peft", "data", "strategy", "retrieval", "trainer", "logger", "callbacks",
            "optim", "scheduler", "launcher", "hydra"} <= {p.name for p in conf_dir().iterdir() if p.is_dir()}


def test_no_import_cycles_between_modules():
    """Lazy (in-function) imports count: a cycle hidden in a function is still two modules that need each other
    (``engines`` <-> ``vllm_server``, now the package ``clinical/engines`` of ``base``, ``hf``, ``vllm`` and
    ``choose``; ``metrics.choice`` <-> ``metrics.clinical`` and ``strategies`` <-> ``stages`` <-> ``pool_rerank``
    were; their shared parts now live in ``clinical/engines/base.py``, ``metrics/text.py`` and
    ``strategies.rerank_pool``, and ``answer`` in ``stages``)."""
    imports = _imports()
    graph = nx.DiGraph()
    for mod, deps in imports.items():
        graph.add_edges_from((mod, dep) for dep in deps if dep in imports and dep != mod)
    cycles = sorted(sorted(c) for c in nx.simple_cycles(graph))
    assert not cycles, f"module import cycles: {cycles}"
