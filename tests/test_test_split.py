"""The test split is scored after fit by Lightning's test stage with the best checkpoint, its metrics logged and
written to metrics.json, and the weights the run then exports are still the final ones."""

from __future__ import annotations

import csv
import json

import torch
from trainutil import TINY

from qwenft.config import compose
from qwenft.train.checkpoint_io import load_checkpoint_file
from qwenft.train.loop import train, train_run


def test_test_split_scored_with_the_best_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    # mode=max keeps the *worst* validation as "best": the test then reads weights other than the final ones
    cfg = compose("train", [*TINY, "trainer.max_steps=4", "trainer.val_check_interval=2",
                            "callbacks.best_checkpoint.mode=max", "callbacks.last_checkpoint.every_n_train_steps=1",
                            "export.enabled=false", f"paths.output_dir={tmp_path}"])
    trained = train_run(cfg, run_dir=tmp_path)
    metrics = trained.metrics
    best = tmp_path / "checkpoints" / "best.ckpt"
    assert metrics["test/checkpoint"] == str(best)
    assert metrics["test/loss"] > 0 and metrics["test/new_word_nll"] > 0 and metrics["test/bits_per_byte"] > 0
    assert "test/new_word_ppl" in metrics and metrics["data/test_overlong"] >= 0
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["test/loss"] == metrics["test/loss"]
    assert json.loads((tmp_path / "run_info.json").read_text())["data"]["test"]["examples"] > 0
    logged = [row for path in tmp_path.rglob("metrics.csv") for row in csv.DictReader(path.open())]
    assert any(row.get("test/loss") for row in logged), "test/loss not logged"
    # the module holds the final weights again (what export.checkpoint=last exports), not the best checkpoint's
    last = load_checkpoint_file(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    state = trained.module.state_dict()
    assert last.keys() == state.keys() and all(torch.equal(last[k], state[k]) for k in last)


def test_no_test_split_no_test_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose("train", [*TINY, "trainer.max_steps=1", "trainer.val_check_interval=1", "data=files",
                            "data.train_path=${demo:train.jsonl}", "data.val_path=${demo:val.jsonl}",
                            "export.enabled=false", f"paths.output_dir={tmp_path}"])
    metrics = train(cfg, run_dir=tmp_path)
    assert not [k for k in metrics if k.startswith("test/")]
