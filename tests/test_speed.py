"""The GPU speed switches (compile, frozen_dtype, head_loss, data.tokens_per_batch, fused AdamW): CPU defaults
unchanged, each switch composes, and a run with them trains on CPU."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from trainutil import TINY, qwenft

from qwenft.adapters.apply import PeftSpec, apply_peft, merged_model, param_groups
from qwenft.config import compose
from qwenft.data.datamodule import collate
from qwenft.data.format import encode_example
from qwenft.model.sources import tiny
from qwenft.tokenizer.extend import extend_model
from qwenft.train.head_loss import resolve
from qwenft.train.module import fused_kwargs, label_loss
from qwenft.train.speed import compile_layers, frozen_dtype, hold_frozen_in
from qwenft.validation import problems


def test_cpu_defaults_compute_what_they_always_did():
    cfg = compose("train", ["model=tiny"])
    assert cfg.compile is False and cfg.data.tokens_per_batch is None and cfg.gradient_checkpointing is False
    assert frozen_dtype(cfg.frozen_dtype, cfg.trainer.accelerator, cfg.trainer.precision) is None
    assert resolve(cfg.head_loss, "cpu") == "dense"
    gpu = compose("train", ["model=tiny", "trainer=gpu"])
    assert frozen_dtype(gpu.frozen_dtype, gpu.trainer.accelerator, gpu.trainer.precision) == torch.bfloat16
    assert frozen_dtype("auto", "gpu", "32-true") is None
    assert frozen_dtype("bfloat16", "cpu", "32-true") == torch.bfloat16


def test_every_switch_composes_and_validates():
    cfg = compose("train", ["model=tiny", "tokenizer=none", "compile=true", "head_loss=chunked", "head_loss_chunk=512",
                            "frozen_dtype=bfloat16", "data.tokens_per_batch=2048", "data.pack_length=1024",
                            "data.max_length=512", "model.attn_implementation=flex_attention"])
    assert problems(cfg, "train") == []
    bad = problems(compose("train", ["model=tiny", "head_loss=fused"]), "train")
    assert any(p.startswith("head_loss='fused': must be one of") for p in bad), bad
    bad = problems(compose("train", ["model=tiny", "tokenizer=none", "head_loss=liger"]), "train")
    assert bad == ["head_loss=liger: needs a CUDA device (trainer.accelerator=cpu); use head_loss=chunked"]


def test_adamw_is_fused_on_cuda_and_multi_tensor_on_cpu_unless_the_config_chose():
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))]}]
    adamw = functools.partial(torch.optim.AdamW, lr=1e-3)
    assert fused_kwargs(adamw, groups) == {"foreach": True}
    assert fused_kwargs(functools.partial(torch.optim.AdamW, foreach=False), groups) == {}
    assert fused_kwargs(functools.partial(torch.optim.SGD, lr=1.0), groups) == {}
    if torch.cuda.is_available():
        cuda = [{"params": [torch.nn.Parameter(torch.zeros(2, device="cuda"))]}]
        assert fused_kwargs(adamw, cuda) == {"fused": True}
        assert fused_kwargs(functools.partial(torch.optim.AdamW, fused=False), cuda) == {}


def test_multi_tensor_adamw_on_cpu_updates_bitwise_like_the_loop():
    """Why foreach may be the CPU default: same parameters after steps with two groups (rows lr, decay)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(16, 96), (96, 16), (8, 16), (12, 64), (7,)]
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(4)]
    out = {}
    for foreach in (False, True):
        ps = [torch.nn.Parameter(x.clone()) for x in init]
        opt = torch.optim.AdamW([{"params": ps[:3], "weight_decay": 0.01},
                                 {"params": ps[3:], "lr": 5e-3, "weight_decay": 0.0}], lr=1e-3, foreach=foreach)
        for step in grads:
            for p, g in zip(ps, step, strict=True):
                p.grad = g.clone()
            opt.step()
        out[foreach] = ps
    assert all(torch.equal(a, b) for a, b in zip(out[False], out[True], strict=True))


def test_frozen_weights_in_bf16_train_the_same_parameters_in_fp32(demo_words):
    loaded = tiny(tie_word_embeddings=False)
    ext = extend_model(loaded.model, loaded.tokenizer, demo_words, init="random", glosses={}, capitalized=False,
                       seed=0)
    model = apply_peft(loaded.model, PeftSpec(r=4, alpha=8, dropout=0.0), ext.new_ids, "new_rows").train()
    batch = collate([{**encode_example(ext.tokenizer, {"prompt": "Define:", "completion": " ".join(demo_words)},
                                       True), "index": 0}], ext.tokenizer.pad_token_id)
    batch.pop("index")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref, _ = label_loss(model, batch)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert hold_frozen_in(model, torch.bfloat16) > 0
    for n, p in model.named_parameters():
        assert p.dtype == (torch.float32 if n in trained else torch.bfloat16), n
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, _ = label_loss(model, batch)
    torch.testing.assert_close(ours.float(), ref.float(), rtol=3e-2, atol=0)  # bf16 residual stream: close, not equal
    ours.backward()
    opt = torch.optim.AdamW(param_groups(model, 1e-3, 1e-3, 0.0))
    opt.step()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for n, p in model.named_parameters()
               if n in trained)
    merged = merged_model(model)  # export still folds the fp32 rows and adapters into the bf16 weights
    assert merged.get_input_embeddings().weight.dtype == torch.bfloat16


def test_a_run_with_a_token_budget_and_the_chunked_head_trains_on_cpu(tmp_path):
    run = tmp_path / "run"
    out = qwenft("train", *TINY, "data.tokens_per_batch=512", "data.packing=true", "head_loss=chunked",
                 "head_loss_chunk=64", "frozen_dtype=bfloat16", "trainer.max_steps=3", "trainer.val_check_interval=3",
                 "export.enabled=false", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and metrics["train/pad_fraction"] < 0.1 and "val/loss" in metrics
    assert metrics["train/label_tokens"] > 4 * 3  # more than batch_size=4 examples' worth of labels per step
    assert "batches of <= 512 tokens" in out.stderr + out.stdout
    assert "frozen weights held in bfloat16" in out.stderr + out.stdout


@pytest.mark.slow  # torch.compile on CPU: minutes on 2 shared cores
def test_compiled_layers_give_the_same_loss_and_gradients():
    loaded = tiny()
    model = apply_peft(loaded.model, PeftSpec(r=4, alpha=8, dropout=0.0), [], "frozen").train()
    examples = [{**encode_example(loaded.tokenizer, {"prompt": "q " * k, "completion": "a b c"}, True), "index": k}
                for k in range(1, 4)]
    batch = collate(examples, 0)
    batch.pop("index")
    ref, _ = label_loss(model, batch)
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    assert compile_layers(model) == 2
    ours, _ = label_loss(model, batch)
    ours.backward()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-6, msg=n)
