"""The GPU throughput bench's dry run (tiny model, CPU) end to end, and its FLOP formula against torch's counter."""

from __future__ import annotations

import json

import torch

from experiments.bench.gpu_throughput import counts, flops, main, medquad_records
from qwenft.adapters.apply import PeftSpec, apply_peft
from qwenft.data.format import IGNORE
from qwenft.model.sources import tiny
from qwenft.train.module import label_loss


def test_dry_run_writes_the_table_and_json(tmp_path):
    report = main(["--device", "cpu", "--tiny", "--out", str(tmp_path), "--profiles", "demo",
                   "--arms", "recipe", "qwenft_best", "--warmup", "1", "--steps", "1"])
    saved = json.loads((tmp_path / "gpu_throughput.json").read_text())
    assert [r["arm"] for r in saved["results"]] == ["recipe", "qwenft_best"]
    for r in report["results"]:
        assert "error" not in r, r
        assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and r["flops_per_token"] > 0
    best = report["results"][1]
    assert best["pad_fraction"] < 0.05 and best["head_loss"] == "chunked"
    assert "data.tokens_per_batch=1024" in best["settings"]
    md = (tmp_path / "gpu_throughput.md").read_text()
    assert "| demo | qwenft_best |" in md and "the recipe (target ≥ 2×)" in md


def test_medquad_like_records_have_its_lengths():
    from qwenft.data.format import encode_example

    tok = tiny().tokenizer
    rec = medquad_records(3, seed=1)
    for r in rec:
        ex = encode_example(tok, r, True)
        assert len(ex["input_ids"]) > 40 and ex["labels"].count(IGNORE) > 20


def test_the_flop_formula_matches_torchs_count_of_a_step():
    """torch's FlopCounterMode counts sdpa without the causal half (12 s^2 d per layer, not 6): the only gap."""
    from torch.utils.flop_counter import FlopCounterMode

    loaded = tiny()
    model = apply_peft(loaded.model, PeftSpec(r=4, alpha=8, dropout=0.0), [], "frozen").train()
    s = 40
    ids = torch.randint(0, 1000, (1, s))
    labels = ids.clone()
    labels[0, :10] = IGNORE
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}
    counter = FlopCounterMode(display=False)
    with counter:
        loss, n = label_loss(model, batch)
        loss.backward()
    c = counts(model)
    assert c["n_trained"] > 0 and c["n_frozen"] > 0 and c["head_rows_trained"] == 0
    ours = flops(c, tokens=s, labels=n, sq=s * s)
    gap = 6 * s * s * c["d_attn"] * c["layers"]
    assert abs(counter.get_total_flops() - (ours + gap)) / counter.get_total_flops() < 0.01
