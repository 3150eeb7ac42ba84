"""Every training run logs all three metric families at each validation, side by side: the loss, new-word
perplexity and clinical-answer scores (``callbacks.clinical_eval``), to the CSV logger and to W&B."""

from __future__ import annotations

import csv

from trainutil import TINY, qwenft


def test_default_training_logs_clinical_metrics_next_to_loss_and_new_word_nll(tmp_path):
    run = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith(("logger=", "callbacks.clinical_eval.n_prompts="))]
    out = qwenft("train", *overrides, "logger=many", "callbacks.clinical_eval.n_prompts=1",
                 "callbacks.clinical_eval.generation.max_new_tokens=2", "trainer.max_steps=2",
                 "trainer.val_check_interval=2", "data.max_val_examples=4", "export.enabled=false",
                 f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    # CSV: one validation row holds all three families at the same step
    (metrics_csv,) = run.glob("csv/**/metrics.csv")
    rows = list(csv.DictReader(metrics_csv.open()))
    val = [r for r in rows if r.get("val/loss")]
    assert val, rows[:3]
    row = val[-1]
    clinical = {k: v for k, v in row.items() if k.startswith("val/clinical_") and v}
    assert row["val/new_word_nll"] and float(row["val/loss"]) > 0
    assert {"val/clinical_answer_rougeL", "val/clinical_answer_f1", "val/clinical_format_valid",
            "val/clinical_coverage"} <= set(clinical)
    assert all(0.0 <= float(v) <= 1.0 for v in clinical.values())
    # W&B (offline): the run's record file holds the same keys (offline runs keep history in run-*.wandb, a
    # binary log of protobuf records that `wandb sync` uploads; the keys are stored as plain strings)
    (record,) = run.glob("wandb/offline-run-*/run-*.wandb")
    data = record.read_bytes()
    for key in ("val/loss", "val/new_word_nll", *clinical):
        assert key.encode() in data, key
