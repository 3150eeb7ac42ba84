"""qwenft train on the tiny model: the loss, the masking, the data path, resume, exports and logging."""

from __future__ import annotations

import json
import os

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from trainutil import TINY, qwenft, token_losses
from transformers import AutoTokenizer

from qwenft.data.datamodule import ResumableLoader, collate, collate_packed, prepare
from qwenft.data.format import IGNORE, encode_example
from qwenft.model.sources import tiny
from qwenft.train.module import label_loss


def test_label_only_logits_give_the_hf_loss():
    loaded = tiny()
    tok = loaded.tokenizer
    ex = [encode_example(tok, {"prompt": p, "completion": c}, True)
          for p, c in [("What is 2+2?", "Four."), ("Name a colour, briefly please.", "Blue is a colour.")]]
    width = max(len(e["input_ids"]) for e in ex)
    ids = torch.full((2, width), tok.pad_token_id)
    labels = torch.full((2, width), IGNORE)
    mask = torch.zeros((2, width), dtype=torch.long)
    for i, e in enumerate(ex):
        ids[i, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
        labels[i, : len(e["labels"])] = torch.tensor(e["labels"])
        mask[i, : len(e["input_ids"])] = 1
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    ours, n = label_loss(loaded.model, batch)
    hf = loaded.model(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(ours, hf, rtol=1e-5, atol=1e-6)
    assert n == int((labels[:, 1:] != IGNORE).sum())


@pytest.mark.parametrize("tied,method,rows", [(True, "lora", "new_rows"), (False, "lora", "new_rows"),
                                               (False, "full", "new_rows"), (True, "lora", "all")])
def test_label_only_logits_give_the_hf_loss_through_peft_wrappers(demo_words, tied, method, rows):
    """LoRA + trainable-token rows, full FT, tied and untied heads: the wrapped lm_head is used, not bypassed."""
    from qwenft.adapters.apply import PeftSpec, apply_peft
    from qwenft.tokenizer.extend import extend_model

    loaded = tiny(tie_word_embeddings=tied)
    ext = extend_model(loaded.model, loaded.tokenizer, demo_words, init="random", glosses={}, capitalized=False,
                       seed=0)
    model = apply_peft(loaded.model, PeftSpec(method=method, r=4, alpha=8, dropout=0.0), ext.new_ids, rows).eval()
    with torch.no_grad():  # move the new rows and adapters off their init so a bypassed wrapper would show
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    ex = [{**encode_example(ext.tokenizer, {"prompt": "Define:", "completion": " ".join(demo_words[i:])}, True),
           "index": i} for i in range(2)]
    batch = collate(ex, ext.tokenizer.pad_token_id)
    batch.pop("index")
    ours, n = label_loss(model, batch)
    hf = model(**batch).loss
    torch.testing.assert_close(ours, hf, rtol=1e-5, atol=1e-6)
    ours.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_packed_rows_give_the_per_example_losses():
    loaded = tiny()
    model, tok = loaded.model.eval(), loaded.tokenizer
    rows = [("What is 2+2?", "Four."), ("Name a colour, briefly please.", "Blue is a colour of the sky."),
            ("Scenario: a long fever.\nQuestion: the cause?", "An infection, most likely viral.")]
    examples = [{**encode_example(tok, {"prompt": p, "completion": c}, True), "index": i}
                for i, (p, c) in enumerate(rows)]
    packed = collate_packed(examples)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    assert packed["position_ids"][0].tolist() == [j for e in examples for j in range(len(e["input_ids"]))]
    with torch.no_grad():
        separate = torch.cat([token_losses(model, collate([e], tok.pad_token_id)) for e in examples])
        together = token_losses(model, packed)
        torch.testing.assert_close(together, separate, rtol=1e-4, atol=1e-5)
        # and the label-only path on a packed row is the mean of the same token losses
        ours, n = label_loss(model, packed)
    assert n == separate.numel()
    torch.testing.assert_close(ours, separate.mean(), rtol=1e-4, atol=1e-5)
    # without the restarts (one long sequence) the later examples would see the earlier ones: losses differ
    with torch.no_grad():
        leaky = token_losses(model, {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1])[None]})
    assert not torch.allclose(leaky, separate, rtol=1e-4, atol=1e-5)


def test_packing_loader_has_no_padding_and_length_grouping_little():
    tok = tiny().tokenizer
    examples = [{**encode_example(tok, {"prompt": "q " * n, "completion": "a " * (n % 7 + 1)}, True), "index": n}
                for n in range(1, 65)]
    for packing in (True, False):
        loader = ResumableLoader(examples, 8, tok.pad_token_id, seed=0, packing=packing)
        batches = list(loader)
        assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(1, 65))
        real = sum(len(e["input_ids"]) for e in examples)
        total = sum(b["input_ids"].numel() for b in batches)
        assert (total == real) if packing else (total - real) / total < 0.15  # pad fraction


@pytest.mark.parametrize("instruct", [True, False])
def test_loss_only_on_the_completion_which_ends_with_eos(instruct):
    tok = tiny(instruct=instruct).tokenizer
    ex = encode_example(tok, {"prompt": "Scenario: fever.\nQuestion: cause?", "completion": "An infection."}, instruct)
    target = [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE]
    eos = "<|im_end|>" if instruct else "<|endoftext|>"
    assert tok.decode(target) == "An infection." + eos
    prompt = tok.decode(ex["input_ids"][: ex["labels"].index(target[0])])
    assert ("<|im_start|>assistant\n" in prompt) == instruct and "Scenario: fever." in prompt


def test_a_completion_that_merges_across_the_boundary_is_counted(tmp_path):
    """``"\\n\\n"`` is one token in the full text: the example trains as generation sees it, and is counted."""
    tok = tiny().tokenizer
    plain = encode_example(tok, {"prompt": "Cause?", "completion": "An infection."}, True)
    merged = encode_example(tok, {"prompt": "Cause?", "completion": "\nAn infection."}, True)
    assert not plain["boundary_merged"] and merged["boundary_merged"]
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "Cause?", "completion": "\nAn infection."}) + "\n"
                 + json.dumps({"prompt": "Cause?", "completion": "An infection."}) + "\n")
    cfg = OmegaConf.create({"max_length": 512, "overlong": "truncate", "schema": "auto"})
    kept = prepare(f, tok, True, cfg, "decomposition")
    assert kept.stats["boundary_merged"] == 1 and len(kept.examples) == 2
    assert all("boundary_merged" not in e for e in kept.examples)


def test_overlong_examples_are_counted_truncated_or_dropped(tmp_path):
    from omegaconf import OmegaConf

    rows = [{"prompt": "p " * n, "completion": "c " * 20} for n in (5, 100, 300)]
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = tiny().tokenizer
    enc = [encode_example(tok, r, True) for r in rows]
    prompt_len = [e["labels"].index(next(x for x in e["labels"] if x != IGNORE)) for e in enc]
    # a limit inside the middle example's completion: it is truncated, the long one loses all its completion
    limit = prompt_len[1] + 5
    assert len(enc[0]["input_ids"]) <= limit < len(enc[1]["input_ids"]) and prompt_len[2] >= limit
    cfg = OmegaConf.create({"max_length": limit, "overlong": "truncate", "schema": "auto"})
    kept = prepare(f, tok, True, cfg, "decomposition")
    assert (kept.overlong, kept.dropped, len(kept.examples)) == (2, 1, 2)
    assert sorted(len(e["input_ids"]) for e in kept.examples) == [len(enc[0]["input_ids"]), limit]
    cfg.overlong = "drop"
    kept = prepare(f, tok, True, cfg, "decomposition")
    assert (kept.overlong, kept.dropped, len(kept.examples)) == (2, 2, 1)


def test_cli_run_writes_outputs_that_reload(tmp_path):
    run = tmp_path / "run"
    out = qwenft("train", *TINY, "data.packing=true", "trainer.max_steps=4", "trainer.val_check_interval=2",
                 "callbacks.last_checkpoint.every_n_train_steps=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and "val/new_word_ppl" in metrics and "train/tokens_per_s" in metrics
    assert metrics["train/pad_fraction"] == 0.0 and metrics["data/train_overlong"] >= 0  # packed: no padding
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if "val/loss" in h] == [2, 4]
    info = json.loads((run / "run_info.json").read_text())
    assert info["packages"]["torch"].startswith("2.13") and len(info["data_sha256"]["train"]) == 64
    assert info["machine"]["precision"] == "32-true" and info["machine"]["cores"] == os.cpu_count()
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / "adapter" / "adapter_config.json").exists()
    manifest = json.loads((run / "merged" / "qwenft_vocab.json").read_text())  # reload: tests/test_export.py
    tok = AutoTokenizer.from_pretrained(run / "merged")
    word = manifest["new_tokens"][0]
    assert tok.convert_tokens_to_ids(word["form"]) == word["id"]
    saved = OmegaConf.load(run / "config.yaml")  # the resolved config, beside Hydra's .hydra/
    assert saved.trainer.max_steps == 4 and (run / ".hydra" / "overrides.yaml").exists()


def _final(run):
    weights = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    return json.loads((run / "metrics.json").read_text()), weights


@pytest.mark.slow  # several CLI runs: over a minute on 2 CPU cores
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    args = [*TINY, "trainer.max_steps=6", "trainer.val_check_interval=100",
            "callbacks.last_checkpoint.every_n_train_steps=3",
            "peft.dropout=0.1"]
    a = qwenft("train", *args, f"hydra.run.dir={tmp_path}/a", cwd=tmp_path)
    assert a.returncode == 0, a.stderr[-3000:]
    killed = qwenft("train", *args, "+callbacks.kill._target_=hooks.KillAtStep", "+callbacks.kill.step=4",
                    f"hydra.run.dir={tmp_path}/b", cwd=tmp_path)
    assert killed.returncode == -9 and not (tmp_path / "b" / "metrics.json").exists()
    resumed = qwenft("train", *args, "ckpt_path=last", f"hydra.run.dir={tmp_path}/b", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (ma, wa), (mb, wb) = _final(tmp_path / "a"), _final(tmp_path / "b")
    assert mb["global_step"] == ma["global_step"] == 6
    assert mb["train/loss"] == ma["train/loss"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow  # several CLI runs: over a minute on 2 CPU cores
def test_same_seed_same_loss_curve(tmp_path):
    args = [*TINY, "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1"]
    for name in ("a", "b"):
        assert qwenft("train", *args, f"hydra.run.dir={tmp_path}/{name}", cwd=tmp_path).returncode == 0
    curves = []
    for n in ("a", "b"):
        rows = [json.loads(line) for line in (tmp_path / n / "history.jsonl").read_text().splitlines()]
        curves.append([(r["step"], r.get("train/loss"), r.get("val/loss")) for r in rows])  # not the timings
    assert curves[0] == curves[1] and sum(1 for _, t, _ in curves[0] if t is not None) >= 4


@pytest.mark.slow  # several CLI runs: over a minute on 2 CPU cores
def test_resume_with_another_tokenizer_is_refused(tmp_path):
    args = [*TINY, "trainer.max_steps=2", "callbacks.last_checkpoint.every_n_train_steps=2"]
    assert qwenft("train", *args, f"hydra.run.dir={tmp_path}/a", cwd=tmp_path).returncode == 0
    out = qwenft("train", *args[:-1], "tokenizer.words_file=null", "tokenizer.words=[neurogenix]",
                 "trainer.max_steps=4", "ckpt_path=last", f"hydra.run.dir={tmp_path}/a", cwd=tmp_path)
    assert out.returncode == 2 and "different tokenizer" in out.stderr


def test_bad_data_fails_before_the_model_loads(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": \n')
    out = qwenft("train", *TINY, f"data.train_path={bad}", f"hydra.run.dir={tmp_path}/r", cwd=tmp_path)
    assert out.returncode == 2 and f"{bad}:2: malformed JSON" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "r" / "run_info.json").exists()


def test_wandb_offline_run_keeps_text_and_keys_out(tmp_path):
    secret = "sk-test-0123456789abcdef"
    out = qwenft("train", *TINY, "logger=wandb", "trainer.max_steps=2", f"hydra.run.dir={tmp_path}/r",
                 cwd=tmp_path, env={"WANDB_API_KEY": secret})
    assert out.returncode == 0, out.stderr[-3000:]
    runs = list((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    from qwenft.data.datamodule import DEMO_DIR

    scenario = json.loads((DEMO_DIR / "train.jsonl").read_text().splitlines()[0])["scenario"][:40]
    for f in (tmp_path / "r").rglob("*"):
        if f.is_file() and f.suffix != ".safetensors":
            data = f.read_bytes()
            assert secret.encode() not in data, f
            if "wandb" in f.parts:
                assert scenario.encode() not in data, f


@pytest.mark.slow  # several CLI runs: over a minute on 2 CPU cores
def test_sigterm_saves_a_checkpoint_and_stops_without_exporting(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from trainutil import ENV

    run = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwenft.cli", "train", *TINY, "trainer.max_steps=100000", "trainer.log_every_n_steps=1",
         "trainer.val_check_interval=100000", "callbacks.last_checkpoint.every_n_train_steps=100000",
         f"hydra.run.dir={run}"],
        cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    history = run / "history.jsonl"
    while time.time() < deadline and not (history.exists() and "train/loss" in history.read_text()):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]  # interrupted, not done: nothing exported
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert 0 < ckpt["global_step"] < 100000
    assert err.strip().splitlines()[-1].startswith(f"interrupted: SIGTERM at step {ckpt['global_step']}")
    assert not (run / "metrics.json").exists() and not (run / "merged").exists()


def test_python_entry_point_trains_n_steps_and_scores_clinical_answers(tmp_path):
    from qwenft.train.loop import train_steps

    overrides = [o for o in TINY if not o.startswith("logger=")] + [
        "logger=none", "export.enabled=false", "trainer.val_check_interval=2", "data.max_val_examples=4",
        "callbacks.clinical_eval.n_prompts=1", "callbacks.clinical_eval.generation.max_new_tokens=4",
        "gradient_checkpointing=true"]
    stats = train_steps(overrides, steps=2, run_dir=tmp_path)
    assert stats["global_step"] == 2 and stats["train/avg_tokens_per_s"] > 0
    assert 0 <= stats["train/pad_fraction"] < 1 and stats["train/lr_body"] > 0
    assert "val/clinical_format_valid" in stats and "val/new_word_ppl" in stats  # NaN scores are not logged
    assert json.loads((tmp_path / "metrics.json").read_text())["global_step"] == 2


def test_ckpt_path_last_resolves_to_the_run_dir_or_says_how(tmp_path):
    from qwenft.errors import UserError
    from qwenft.train.resume import resolve_ckpt

    ckpt = tmp_path / "old" / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match="run_dir= or hydra.run.dir="):
        resolve_ckpt("last", tmp_path / "old")
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    assert resolve_ckpt("last", tmp_path / "old") == ckpt
    assert resolve_ckpt(str(tmp_path / "old"), tmp_path / "new") == ckpt  # a run dir means its last checkpoint
    assert resolve_ckpt(str(ckpt), tmp_path / "new") == ckpt and resolve_ckpt(None, tmp_path) is None


def test_rank_loaders_are_disjoint_and_cover_the_epoch():
    tok = tiny().tokenizer
    examples = [{**encode_example(tok, {"prompt": "q " * n, "completion": "a"}, True), "index": n} for n in range(37)]
    batches = [list(ResumableLoader(examples, 4, tok.pad_token_id, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(batches[0]) == len(batches[1]) == 5  # same step count on each rank, or DDP would hang
    seen = [{i for b in bs for i in b["index"].tolist()} for bs in batches]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(37))


def test_prompt_completion_files_without_val_still_report_new_words(tmp_path, caplog):
    """Generic files (``data=files``): no val split means no validation, but the run still ends with new-word
    numbers (computed once at the end on the training text) and the pad fraction of its epoch. That those val/*
    numbers come from training text is said (a warning) and recorded (``run_info.json`` ``heldout``)."""
    from qwenft.train.loop import train_steps

    words = ["neurogenix", "flyrcrark"]
    rows = [{"prompt": f"What is item {i}?",
             "completion": f"Item {i} is {words[i % 2]}, given {'twice ' * (i % 5)}daily."} for i in range(12)]
    (tmp_path / "train.csv").write_text("prompt,completion\n" + "".join(f'"{r["prompt"]}","{r["completion"]}"\n'
                                                                           for r in rows))
    overrides = [o for o in TINY if not o.startswith(("logger=", "tokenizer.words_file"))] + [
        "logger=none", "export.enabled=false", "data=files", f"data.train_path={tmp_path / 'train.csv'}",
        "tokenizer.words=[neurogenix,flyrcrark]", "tokenizer.init=mean_subword"]
    stats = train_steps(overrides, steps=2, run_dir=tmp_path / "run")
    assert stats["global_step"] == 2 and "val/loss" not in stats
    assert stats["val/new_word_ppl"] > 0 and 0 <= stats["data/train_pad_fraction_epoch"] < 0.5
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert set(info["data_sha256"]) == {"train"} and info["data"]["train"]["examples"] == 12
    assert info["heldout"]["source"] == "training texts (first 32; no validation split)"
    assert info["heldout"]["texts"] == 4 and info["heldout"]["new_word_occurrences"] > 0
    assert "computed on the first 32 training texts (not held out)" in caplog.text


def test_gradient_checkpointing_reaches_the_wrapped_model_through_the_current_api():
    """``gradient_checkpointing=true`` turns checkpointing on under the LoRA wrapper, by transformers' current name
    (the old one warns a FutureWarning and goes in v6)."""
    import warnings

    from qwenft.config import compose
    from qwenft.train.build import wrap_model

    cfg = compose("train", [*TINY, "gradient_checkpointing=true"])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*`gradient_checkpointing_enable` is deprecated.*")
        model = wrap_model(cfg, tiny().model, [])
    assert model.get_base_model().is_activation_checkpointing
