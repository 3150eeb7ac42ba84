"""qwenft report: known numbers in synthetic run directories -> known tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qwenft.errors import UserError
from qwenft.report import find_runs, report


def make_run(root: Path, name: str, model: str, init: str, seed: int, ppl: float, curve: list[float]) -> None:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "tokenizer": {"init": init}}))
    (run / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": {"model": model, "tokenizer": "extend"}}}})
    )
    (run / "metrics.json").write_text(json.dumps({"val/new_word_ppl": ppl, "note": "text is ignored"}))
    (run / "history.jsonl").write_text(
        "".join(json.dumps({"step": 10 * (i + 1), "val/new_word_ppl": v}) + "\n" for i, v in enumerate(curve))
    )


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, ppl in enumerate([10.0, 12.0, 14.0]):
        make_run(root, f"a{seed}", "offline", "mean_subword", seed, ppl, [40.0, ppl])
    make_run(root, "b0", "offline", "default", 0, 20.0, [80.0, 20.0])
    make_run(root, "c0", "tiny", "mean_subword", 0, 100.0, [200.0, 100.0])
    return root


def test_table_has_mean_std_and_n(runs, tmp_path):
    md = report([runs], ["model", "tokenizer.init"], ["val/new_word_ppl"], tmp_path / "out", "val/new_word_ppl")
    assert md.splitlines() == [
        "| model | tokenizer.init | val/new_word_ppl | n |",
        "|---|---|---|---|",
        "| offline | default | 20.000 | 1 |",
        "| offline | mean_subword | 12.000 ± 2.000 | 3 |",
        "| tiny | mean_subword | 100.000 | 1 |",
    ]
    tex = (tmp_path / "out" / "table.tex").read_text()
    assert r"offline & mean\_subword & 12.000 $\pm$ 2.000 & 3 \\" in tex
    data = json.loads((tmp_path / "out" / "table.json").read_text())
    assert data[1]["val/new_word_ppl"] == {"mean": 12.0, "std": 2.0, "n": 3}
    assert {p.name for p in (tmp_path / "out").glob("*.png")} == {
        "bars_val_new_word_ppl.png", "curve_val_new_word_ppl.png"}


def test_missing_keys_and_metrics_show_as_dashes(runs, tmp_path):
    md = report([runs], ["peft.r"], ["val/new_word_ppl", "val/absent"], tmp_path / "o", plots=False)
    assert "| — | 31.200 ± 38.642 | — | 5 |" in md


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="no run directories"):
        find_runs([tmp_path])


def test_cli(runs, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "qwenft.cli", "report", f"runs=[{runs}]", "group_by=[tokenizer.init]",
         "metrics=[val/new_word_ppl]", "plots=false", f"out={tmp_path}/r", f"hydra.run.dir={tmp_path}/h"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "| mean_subword | 34.000 ± 44.030 | 4 |" in out.stdout
