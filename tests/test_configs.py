"""Every option of every group of the train root composes, alone and with every option of every other group."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

import qwenft  # noqa: F401 - registers the typed config schemas and the ${demo:} resolver
from qwenft.cli import VERBS
from qwenft.config import conf_dir

CONF = conf_dir()


def train_groups() -> list[str]:
    """The groups in train.yaml's defaults list (other folders in conf/ belong to other verbs)."""
    defaults = yaml.safe_load((CONF / "train.yaml").read_text())["defaults"]
    return [g for d in defaults if isinstance(d, dict) and (g := next(iter(d))) != "hydra"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def extra(group: str, option: str) -> list[str]:
    return ["data.train_path=x.jsonl"] if (group, option) == ("data", "files") else []


def test_train_groups_are_the_documented_ones():
    assert {"model", "tokenizer", "peft", "data", "strategy", "optim", "scheduler", "trainer", "logger", "callbacks",
            "experiment", "paths", "launcher"} <= set(train_groups())
    assert {"cpu", "gpu", "ddp", "fsdp", "deepspeed"} <= set(options("trainer"))
    assert {"wandb", "csv", "tensorboard", "mlflow", "none"} <= set(options("logger"))


@pytest.mark.parametrize("group,option", [(g, o) for g in train_groups() for o in options(g)])
def test_each_group_option_composes_with_train(group, option):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"{group}={option}", *extra(group, option)], return_hydra_config=True)
    assert cfg.seed == 0 and cfg.optim._target_ == "torch.optim.AdamW" and cfg.scheduler._target_
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    assert cfg.trainer.max_steps > 0 and cfg.data.max_length > 0 and cfg.strategy.name


def test_every_pair_of_options_composes():
    """Pairwise coverage: each option of each group together with each option of every other group."""
    groups = train_groups()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for g1, g2 in itertools.combinations(groups, 2):
            for o1, o2 in itertools.product(options(g1), options(g2)):
                overrides = [f"{g1}={o1}", f"{g2}={o2}", *extra(g1, o1), *extra(g2, o2)]
                cfg = compose("train", overrides=overrides)
                assert cfg.optim.lr > 0, overrides


def test_typed_tokenizer_schema_rejects_bad_values():
    from hydra.errors import ConfigCompositionException

    with initialize_config_dir(str(CONF), version_base="1.3"), pytest.raises(ConfigCompositionException):
        compose("train", overrides=["tokenizer.trainable_rows=sometimes"])


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
    assert cfg.model._target_.endswith("offline") and cfg.logger.wandb.offline


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options_build_lightning_strategies(option):
    """The multi-GPU configs must at least construct their strategy here (no GPU, no launch)."""
    from hydra.utils import instantiate

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"trainer={option}"])
    strategy = cfg.trainer.strategy
    if not isinstance(strategy, str):
        import torch

        if not torch.distributed.is_available():
            pytest.skip("torch.distributed unavailable")
        assert type(instantiate(strategy)).__name__ == "FSDPStrategy"
    else:
        assert strategy in ("auto", "ddp", "deepspeed_stage_2")
