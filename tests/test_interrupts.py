"""Interrupted and refused runs lose nothing (issue #18), with real signals, a real full disk and real runs.

Slow: each test trains the tiny model in a subprocess (the in-process battery is ``tests/test_bad_inputs.py``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from badinputs import mounted, tree_digest
from trainutil import ENV, TINY, qwenft

from qwenft.data.datamodule import DEMO_DIR

pytestmark = pytest.mark.slow


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def _train_until_logged(run: Path, args: list[str], rows: int = 2) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "qwenft.cli", "train", *args, f"hydra.run.dir={run}"],
                            cwd=run.parent, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.umask(0o022))
    hist = run / "history.jsonl"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if hist.exists() and hist.read_text().count("train/loss") >= rows:
            return proc
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"no training progress: {proc.communicate()[1][-2000:]}")


def test_sigterm_exits_143_without_export_then_resume_finishes_with_each_step_once(tmp_path):
    run = tmp_path / "r"
    args = [*TINY, "trainer.log_every_n_steps=1", "trainer.val_check_interval=100000",
            "callbacks.last_checkpoint.every_n_train_steps=100000"]
    proc = _train_until_logged(run, [*args, "trainer.max_steps=100000"])
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert err.strip().splitlines()[-1] == (
        f"interrupted: SIGTERM at step {step}: saved {run}/checkpoints/last.ckpt; nothing was exported. Resume "
        f"with the same command plus ckpt_path=last run_dir={run}")
    assert not any((run / d).exists() for d in ("metrics.json", "merged", "adapter", "tokenizer"))

    # what a kill during an export or a checkpoint write leaves behind, for the next start to clean up
    dead = _dead_pid()
    (run / f".merged.tmp-{dead}-abc").mkdir()
    (run / f".merged.tmp-{dead}-abc" / "model.safetensors").write_bytes(b"half")
    (run / "checkpoints" / f".last.ckpt.tmp-{dead}").write_bytes(b"half")
    with open(run / "history.jsonl", "a") as f:
        f.write('{"step": 99999, "train/lo')  # a line cut short by a kill

    resumed = subprocess.run([sys.executable, "-m", "qwenft.cli", "train", *args, f"trainer.max_steps={step + 2}",
                              "ckpt_path=last", f"hydra.run.dir={run}"], cwd=tmp_path, env=ENV, capture_output=True,
                             text=True, timeout=900, preexec_fn=lambda: os.umask(0o022))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["global_step"] == step + 2
    steps = [json.loads(line)["step"] for line in (run / "history.jsonl").read_text().splitlines()
             if "train/loss" in line]
    assert steps == list(range(1, step + 3)), steps  # every step once, in order, none lost, none repeated
    assert not [p.name for p in [*run.iterdir(), *(run / "checkpoints").iterdir()] if ".tmp-" in p.name]
    merged = run / "merged"
    assert merged.stat().st_mode & 0o777 == 0o755  # umask 022: another account can load it
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in merged.iterdir())


def test_sigint_exits_130_without_export(tmp_path):
    run = tmp_path / "r"
    proc = _train_until_logged(run, [*TINY, "trainer.max_steps=100000", "trainer.val_check_interval=100000",
                                     "callbacks.last_checkpoint.every_n_train_steps=100000"], rows=1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: SIGINT at step ")
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()


def test_disk_full_during_export_is_one_line_and_a_re_export_completes(tmp_path):
    with mounted("tmpfs", tmp_path / "disk", size="30m") as disk:
        run = disk / "run"
        out = qwenft("train", *TINY, "trainer.max_steps=2", "callbacks.last_checkpoint.every_n_train_steps=2",
                     f"hydra.run.dir={run}", cwd=tmp_path)
        assert out.returncode == 3, out.stderr[-3000:]
        assert "Traceback" not in out.stderr
        errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and errors[0] == out.stderr.strip().splitlines()[-1]
        assert re.match(rf"error: cannot write {run}/(tokenizer|adapter|merged): No space left on device", errors[0])
        assert "train/loss" in json.loads((run / "metrics.json").read_text())  # the run's numbers are kept
        assert not [p.name for p in run.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
        subprocess.run(["mount", "-o", "remount,size=400m", str(disk)], check=True)
        again = qwenft("export", str(run), cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        card = (run / "merged" / "README.md").read_text()
        assert "`train/loss`" in card and (run / "merged" / "model.safetensors").is_file()


def test_resume_on_other_data_needs_allow_data_change_and_is_recorded(tmp_path):
    run = tmp_path / "r"
    args = [*TINY, "callbacks.last_checkpoint.every_n_train_steps=2", f"hydra.run.dir={run}"]
    first = qwenft("train", *args, "trainer.max_steps=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    old_hashes = json.loads((run / "run_info.json").read_text())["data_sha256"]
    other = tmp_path / "train.jsonl"
    other.write_text("".join((DEMO_DIR / "train.jsonl").read_text().splitlines(keepends=True)[1:]))
    more = [*args, "trainer.max_steps=3", "ckpt_path=last", "data=files", f"data.train_path={other}",
            f"data.val_path={DEMO_DIR / 'val.jsonl'}", f"data.test_path={DEMO_DIR / 'test.jsonl'}"]
    before = tree_digest(run)
    refused = qwenft("train", *more, cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(f"error: ckpt_path={run}/checkpoints/last.ckpt: "
                                                               "resuming with other data")
    assert tree_digest(run) == before  # nothing written into the old run, .hydra/ and the log included
    allowed = qwenft("train", *more, "allow_data_change=true", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    info = json.loads((run / "run_info.json").read_text())
    assert info["previous_data_sha256"] == old_hashes and info["data_sha256"]["train"] != old_hashes["train"]
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 3


def test_sigterm_during_the_final_export_exports_nothing(tmp_path):
    """SIGTERM while the export writes exited 143 with adapter/ and metrics.json of the new step beside a stale
    merged/. The export is all or nothing now: the previous outputs stay whole, and the exit says so."""
    run = tmp_path / "r"
    args = [*TINY, "callbacks.last_checkpoint.every_n_train_steps=2", f"hydra.run.dir={run}"]
    first = qwenft("train", *args, "trainer.max_steps=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    outputs = ("metrics.json", "merged", "adapter", "tokenizer")
    before = {name: tree_digest(run / name) if (run / name).is_dir() else (run / name).read_bytes()
              for name in outputs}
    # SIGTERM from inside the export, after tokenizer/ and adapter/ are written and before merged/ is
    term = ("import os, signal, qwenft.train.export as e; merge = e.merged_model; "
            "e.merged_model = lambda m: (os.kill(os.getpid(), signal.SIGTERM), merge(m))[1]; "
            "from qwenft.cli import main; main()")
    out = subprocess.run([sys.executable, "-c", term, "train", *args, "trainer.max_steps=4", "ckpt_path=last"],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert out.returncode == 143, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f"interrupted: SIGTERM during the export: nothing was exported (the previous outputs are unchanged); "
        f"`qwenft export {run}` exports the last checkpoint")
    after = {name: tree_digest(run / name) if (run / name).is_dir() else (run / name).read_bytes()
             for name in outputs}
    assert after == before  # the step-2 export, whole
    assert not [p.name for p in run.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_a_run_killed_during_a_validation_has_that_validation_after_its_resume(tmp_path):
    """last.ckpt of step 3 is saved before step 3's validation; killed during it, the resumed run started after
    step 3 and Lightning skipped the validation: history.jsonl had no val row for step 3. Now it is run."""
    run = tmp_path / "r"
    args = [*TINY, "trainer.max_steps=6", "trainer.val_check_interval=3",
            "callbacks.last_checkpoint.every_n_train_steps=3",
            "export.enabled=false", "data.max_val_examples=4", f"hydra.run.dir={run}"]
    killed = qwenft("train", *args, "+callbacks.kill._target_=hooks.KillInValidation", "+callbacks.kill.step=3",
                    cwd=tmp_path)
    assert killed.returncode == -9
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert not [r for r in rows if "val/loss" in r]  # killed before step 3's validation was written
    resumed = qwenft("train", *args, "ckpt_path=last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val/loss" in r] == [3, 6]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3, 4, 5, 6]


def test_sigterm_while_scoring_the_test_split_says_training_had_ended(tmp_path):
    """The demo stopped by a timeout during the test split printed "SIGTERM before training started" after 30
    trained steps: the line now names the phase and the step, and the way out."""
    run = tmp_path / "r"
    term = ("import os, signal, qwenft.train.module as m; step = m.QwenFTModule.test_step; "
            "m.QwenFTModule.test_step = lambda self, *a, **k: (os.kill(os.getpid(), signal.SIGTERM), "
            "step(self, *a, **k))[1]; from qwenft.cli import main; main()")
    out = subprocess.run([sys.executable, "-c", term, "train", *TINY, "trainer.max_steps=2",
                          "callbacks.last_checkpoint.every_n_train_steps=2", f"hydra.run.dir={run}"],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert out.returncode == 143, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f"interrupted: SIGTERM while scoring the test split, after training ended at step 2: nothing was "
        f"exported; `qwenft export {run}` exports the last checkpoint")
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "merged").exists()
