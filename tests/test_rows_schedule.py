"""Rows-only warm-up and a constant rows lr (qwenft.train.schedule): what each group's lr is, step by step."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from trainutil import TINY, qwenft
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from qwenft.errors import UserError
from qwenft.train.schedule import group_schedule

TOTAL = 20


def _optimizer(rows: bool = True) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-4, "name": "body"},
              {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-4, "name": "body_no_decay"}]
    if rows:
        groups.append({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-2, "name": "rows"})
    return torch.optim.AdamW(groups)


def _lrs(opt, sched, steps: int) -> list[dict[str, float]]:
    seen = []
    for _ in range(steps):
        seen.append({g["name"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    return seen


def _maker(opt):
    return lambda n: get_cosine_with_min_lr_schedule_with_warmup(opt, num_warmup_steps=4, num_training_steps=n,
                                                                 min_lr_rate=0.1)


def test_without_levers_it_is_the_configured_schedule_for_every_group():
    opt, ref_opt = _optimizer(), _optimizer()
    mine = _lrs(opt, group_schedule(opt, _maker(opt), TOTAL), TOTAL)
    ref = _lrs(ref_opt, _maker(ref_opt)(TOTAL), TOTAL)
    assert mine == ref


def test_rows_warm_up_alone_then_the_body_runs_its_whole_schedule_in_the_remaining_steps():
    opt = _optimizer()
    lrs = _lrs(opt, group_schedule(opt, _maker(opt), TOTAL, rows_warmup_steps=5), TOTAL)
    assert all(s["body"] == 0 and s["body_no_decay"] == 0 for s in lrs[:5])
    assert all(s["rows"] > 0 for s in lrs[1:5])  # the rows train while the body waits
    ref_opt = _optimizer()
    body_ref = [s["body"] for s in _lrs(ref_opt, _maker(ref_opt)(TOTAL - 5), TOTAL - 5)]
    assert [s["body"] for s in lrs[5:]] == pytest.approx(body_ref)  # its own warm-up, then decay to the end
    assert lrs[-1]["body"] == pytest.approx(1e-5, rel=0.2)


def test_constant_rows_keep_their_lr_while_the_body_warms_up_and_decays():
    opt = _optimizer()
    lrs = _lrs(opt, group_schedule(opt, _maker(opt), TOTAL, rows_schedule="constant"), TOTAL)
    assert all(s["rows"] == 1e-2 for s in lrs)
    assert lrs[0]["body"] == 0 and max(s["body"] for s in lrs) == pytest.approx(1e-4) and lrs[-1]["body"] < 2e-5


def test_levers_without_a_scheduler_still_hold_the_body_back():
    opt = _optimizer()
    lrs = _lrs(opt, group_schedule(opt, None, TOTAL, rows_warmup_steps=3), 5)
    assert [s["body"] for s in lrs] == [0, 0, 0, 1e-4, 1e-4] and all(s["rows"] == 1e-2 for s in lrs)


@pytest.mark.parametrize(("kwargs", "make", "rows", "message"), [
    ({"rows_warmup_steps": 3}, None, False, "no new rows train"),
    ({"rows_warmup_steps": TOTAL}, None, True, "leaves no step for the body"),
    ({"rows_schedule": "constant"}, partial(torch.optim.lr_scheduler.StepLR, step_size=5), True, "LambdaLR"),
])
def test_what_cannot_work_is_refused_in_one_line(kwargs, make, rows, message):
    opt = _optimizer(rows)
    with pytest.raises(UserError, match=message):
        group_schedule(opt, make and (lambda n: make(opt)), TOTAL, **kwargs)


def test_train_logs_a_body_lr_of_zero_during_the_rows_warm_up(tmp_path):
    run = tmp_path / "run"
    out = qwenft("train", *TINY, "trainer.max_steps=5", "trainer.log_every_n_steps=1", "tokenizer.rows_warmup_steps=2",
                 "tokenizer.rows_schedule=constant", "trainer.val_check_interval=5", f"hydra.run.dir={run}",
                 cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    body = [r["train/lr_body"] for r in rows if "train/lr_body" in r]
    lr_rows = {r["train/lr_rows"] for r in rows if "train/lr_rows" in r}
    assert body[:2] == [0.0, 0.0] and body[2] == 0.0 and any(b > 0 for b in body[3:]) and len(body) == 5
    assert len(lr_rows) == 1 and lr_rows.pop() == pytest.approx(1e-3)  # constant, logged as float32


@pytest.mark.parametrize(("overrides", "message"), [
    (["tokenizer=none", "tokenizer.rows_warmup_steps=2"], "needs new rows that train"),
    (["tokenizer.trainable_rows=frozen", "tokenizer.rows_schedule=constant"], "needs new rows that train"),
    (["trainer.max_steps=4", "tokenizer.rows_warmup_steps=4"], "leaves no step for the body"),
])
def test_levers_that_cannot_apply_are_refused_before_any_model_loads(tmp_path, overrides, message):
    out = qwenft("train", *TINY, *overrides, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "run_info.json").exists()
