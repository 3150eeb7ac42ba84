"""Every option of every config group composes with the train root (and the other roots compose)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import qwenft  # noqa: F401 - registers the typed config schemas and the ${demo:} resolver
from qwenft.cli import VERBS, conf_dir

CONF = conf_dir()
GROUPS = [p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra",)]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_each_group_option_composes_with_train(group, option):
    overrides = [f"{group}={option}"]
    if group == "data" and option == "files":
        overrides.append("data.train_path=x.jsonl")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.seed == 0 and "optim" in cfg


@pytest.mark.parametrize("root", sorted({c for c, _ in VERBS.values()}))
def test_every_root_config_composes(root):
    if not (CONF / f"{root}.yaml").exists():
        pytest.skip(f"conf/{root}.yaml not present")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        compose(root, overrides=["corpus=x"] if root == "discover" else [], return_hydra_config=True)


def test_demo_experiment_points_at_real_files():
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=demo"], return_hydra_config=True)
    assert Path(cfg.tokenizer.words_file).exists()
    assert cfg.model._target_.endswith("offline")
