"""Every W&B sweep YAML parses, and each of its sampled command lines composes into a valid train config."""

from __future__ import annotations

import itertools

import pytest
import yaml
from hydra import compose, initialize_config_dir

import qwenft  # noqa: F401 - config schemas and resolvers
from qwenft.config import conf_dir

SWEEPS = sorted((conf_dir() / "hparams_search" / "wandb").glob("*.yaml"))
assert SWEEPS, "no W&B sweep YAMLs found"


def samples(param: dict) -> list:
    if "values" in param:
        return param["values"]
    return [param["min"], param["max"]]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_commands_compose(path):
    spec = yaml.safe_load(path.read_text())
    assert spec["program"] == "qwenft" and spec["command"][:2] == ["${program}", "train"]
    fixed = [c for c in spec["command"][2:] if not c.startswith("${")]
    grid = [[(k, v) for v in samples(p)] for k, p in spec["parameters"].items()]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        for combo in itertools.islice(itertools.product(*grid), 50):
            overrides = fixed + [f"{k}={v}" for k, v in combo]
            cfg = compose("train", overrides=overrides)
            for k, v in combo:
                node = cfg
                for part in k.split("."):
                    node = node[part]
                assert str(node) == str(v)


def test_optuna_search_space_composes():
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=newword_optuna", "experiment=demo"],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper.direction == "minimize" and "peft.r" in cfg.hydra.sweeper.params
    assert cfg.objective == "val/new_word_nll"
