"""Scale out (Hydra launchers, a resumable Optuna study), share (export verb, model card, Hub folder), log
anywhere (W&B, CSV, TensorBoard, MLflow), and bring your own configs -- through the real CLI where it counts."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf
from trainutil import TINY, qwenft

from qwenft.config import compose


@pytest.mark.parametrize("launcher,target", [("joblib", "JoblibLauncher"), ("slurm", "SlurmLauncher")])
def test_shipped_launchers_compose_into_hydra(launcher, target):
    cfg = compose("train", [f"launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and "%j" in cfg.hydra.launcher.submitit_folder


def test_optuna_search_uses_a_persistent_storage():
    cfg = compose("train", ["hparams_search=newword_optuna"], return_hydra_config=True)
    assert cfg.hydra.sweeper.storage.startswith("sqlite:///") and cfg.objective == "val/new_word_nll"


def test_a_users_config_folder_adds_options(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mytiny.yaml").write_text("defaults:\n  - tiny\n  - _self_\nhidden_size: 32\n")
    cfg = compose("train", ["model=mytiny"], config_dirs=[tmp_path])
    assert cfg.model.hidden_size == 32 and cfg.model._target_.endswith("tiny")
    out = qwenft("train", "--config-dir", str(tmp_path), "model=mytiny", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert OmegaConf.create(out.stdout).model.hidden_size == 32


@pytest.mark.slow  # two tiny training runs and a re-export through the CLI
def test_loggers_best_checkpoint_export_and_model_card(tmp_path):
    run = tmp_path / "run"
    args = [o for o in TINY if not o.startswith("logger=")]
    out = qwenft("train", *args, "logger=[csv,tensorboard,mlflow]", f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                 "trainer.max_steps=4", "trainer.val_check_interval=2", "export.checkpoint=best",
                 f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    import sqlite3

    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        logged = {k for (k,) in db.execute("select distinct key from metrics")}
    assert {"val/new_word_nll", "val/loss", "train/loss"} <= logged
    assert (run / "csv").is_dir() and (run / "checkpoints" / "best.ckpt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["export/checkpoint"].endswith("best.ckpt")
    card = (run / "merged" / "README.md").read_text()
    assert "base_model: tiny" in card and "new words: 40" in card and "qwenft train" in card
    assert "val/new_word_nll" in card and (run / "adapter" / "README.md").read_text() == card

    trained = (run / "merged" / "model.safetensors").read_bytes()
    again = qwenft("export", str(run), "checkpoint=best", cwd=tmp_path)  # rebuilt from config + best.ckpt
    assert again.returncode == 0, again.stderr[-3000:]
    assert "merged:" in again.stdout and (run / "merged" / "model.safetensors").read_bytes() == trained
    last = qwenft("export", str(run), "checkpoint=last", cwd=tmp_path)
    assert last.returncode == 0 and "the `last` checkpoint" in (run / "merged" / "README.md").read_text()

    from qwenft.train.export import push_plan

    plan = push_plan(OmegaConf.create({"hub_repo_id": "me/qwenft-test", "private": True}), run)
    assert [(p.name, where) for p, where in plan] == [("merged", "."), ("adapter", "adapter")]
    assert all((p / "README.md").is_file() for p, _ in plan)


def test_export_refuses_what_is_not_a_run(tmp_path):
    out = qwenft("export", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and "no config.yaml" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow  # two one-trial Optuna sweeps of the tiny model
def test_optuna_study_resumes_across_processes(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path}/study.db"
    args = [*TINY, "hparams_search=newword_optuna", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=1",
            "hydra.sweeper.sampler.n_startup_trials=1", "trainer.max_steps=2", "trainer.val_check_interval=2",
            "export.enabled=false"]
    for i in range(2):
        out = qwenft("train", "-m", *args, f"hydra.sweep.dir={tmp_path}/sweep{i}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="qwenft_newword", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(t.value is not None and t.value > 0 for t in done)
