"""DDP on 2 CPU processes (gloo) through the real CLI: disjoint data on the ranks, identical weights at the end."""

from __future__ import annotations

import json

from trainutil import TINY, qwenft


def test_two_cpu_processes_see_disjoint_data_and_end_identical(tmp_path):
    run = tmp_path / "ddp"
    out = qwenft("train", *TINY, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                 "trainer.max_steps=3", "trainer.val_check_interval=100",
                 "+callbacks.rank_state._target_=hooks.RankState",
                 f"+callbacks.rank_state.out_dir={run}",
                 f"hydra.run.dir={run}", cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    r0 = json.loads((run / "rank0.json").read_text())
    r1 = json.loads((run / "rank1.json").read_text())
    assert r0["examples"] and r1["examples"]
    assert not set(r0["examples"]) & set(r1["examples"])
    assert r0["params_sha256"] == r1["params_sha256"]
    info = json.loads((run / "run_info.json").read_text())
    assert info["world_size"] == 2
