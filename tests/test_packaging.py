"""What a PyPI user of qwenft relies on: every imported package declared, the license and typing marker shipped,
the Optuna sweeper an extra with a clear error, no log file in the user's directory, a --help that says what
each verb does."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

from qwenft.cli import SUMMARIES, VERBS, main, sweep_extra_missing
from qwenft.config import compose

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``torch==2.13.0`` -> ``torch``)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0]).lower()


def _declared() -> set[str]:
    names = {_name(r) for r in PYPROJECT["dependencies"]}
    for extra in PYPROJECT["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names


def _imports() -> dict[str, str]:
    """Top-level module -> the first file importing it, for every absolute import under qwenft/."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "qwenft").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                found.setdefault(mod.split(".")[0], str(path.relative_to(ROOT)))
    return found


#: optional imports that only install where a GPU is (Triton): their distribution cannot be looked up on a CPU box
GPU_ONLY = {"liger_kernel": "liger-kernel"}


def test_every_third_party_import_is_declared():
    dists = md.packages_distributions()
    declared = _declared()
    missing = []
    for mod, where in sorted(_imports().items()):
        if mod in sys.stdlib_module_names or mod == "qwenft":
            continue
        names = {_name(d) for d in dists.get(mod, [])}
        if not names and mod in GPU_ONLY:
            names = {_name(GPU_ONLY[mod])}
        assert names, f"{mod} (imported in {where}) is not installed: cannot tell its distribution"
        if not names & declared:
            missing.append(f"{mod} ({where}) -> {sorted(names)}")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_declared_check_catches_an_undeclared_import():
    # the mapping the test above relies on: an import name resolves to its distribution, which must be listed
    assert "numpy" in {_name(d) for d in md.packages_distributions()["numpy"]}
    assert _name("hydra-core>=1.3.2,<1.4") == "hydra-core" and _name("Foo_Bar[x]>=1") == "foo-bar"


def test_metadata_license_and_typing_marker():
    assert PYPROJECT["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert PYPROJECT["authors"] and PYPROJECT["classifiers"] and PYPROJECT["keywords"]
    assert (ROOT / "qwenft" / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["qwenft"]
    assert "py.typed" in data


def test_private_hydra_api_is_bounded():
    hydra = next(r for r in PYPROJECT["dependencies"] if _name(r) == "hydra-core")
    assert "<1.4" in hydra, "cli.py uses hydra._internal and validation.py parses Hydra's messages"


def test_sweeper_and_its_pins_are_the_sweep_extra():
    core = {_name(r) for r in PYPROJECT["dependencies"]}
    sweep = {_name(r) for r in PYPROJECT["optional-dependencies"]["sweep"]}
    assert {"hydra-optuna-sweeper", "sqlalchemy", "alembic"} <= sweep
    assert not core & {"hydra-optuna-sweeper", "sqlalchemy", "alembic"}
    assert "sweep" in re.search(r"^EXTRAS := (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split(",")


def test_hparams_search_without_the_sweep_extra_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_optuna_sweeper", None)  # import now raises ImportError
    monkeypatch.setenv("QWENFT_VERB", "")  # main() sets it; restored after the test
    with pytest.raises(SystemExit) as stop:
        main(["train", "-m", "hparams_search=newword_optuna", "experiment=demo"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'qwenft[sweep]'" in err[0] and "hparams_search=newword_optuna" in err[0]
    assert sweep_extra_missing(["hparams_search=null", "seed=1"]) is None


def test_sweep_extra_installed_is_no_error():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    assert sweep_extra_missing(["hparams_search=newword_optuna"]) is None


def test_help_says_what_each_verb_does(monkeypatch, capsys):
    monkeypatch.delenv("QWENFT_VERB", raising=False)  # else main() reads --help as a re-launched verb's
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert set(SUMMARIES) == set(VERBS)
    for verb, summary in SUMMARIES.items():
        line = next(line for line in out.splitlines() if line.split()[:1] == [verb])
        assert summary in line and len(line) <= 110


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_no_verb_logs_into_the_working_directory(verb):
    """A verb whose Hydra run dir is the cwd ("."): its job logging must not write ``<job>.log`` there."""
    cfg = compose(VERBS[verb][0], ["run_dir=x"] if verb == "export" else [], return_hydra_config=True)
    if cfg.hydra.run.dir not in (".", "./"):
        return
    handlers = cfg.hydra.job_logging.get("handlers") or {}
    files = [h for h in handlers.values() if "filename" in h]
    assert not files, f"{verb} writes {files[0]['filename']} into the working directory"


def test_no_log_file_committed():
    assert not list(ROOT.glob("*.log"))
