"""qwenft train on the tiny model: the loss, the masking, the data path, resume, exports and logging."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from trainutil import TINY, qwenft
from transformers import AutoModelForCausalLM, AutoTokenizer

from qwenft.data.datamodule import prepare
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


@pytest.mark.parametrize("instruct", [True, False])
def test_loss_only_on_the_completion_which_ends_with_eos(instruct):
    tok = tiny(instruct=instruct).tokenizer
    ex = encode_example(tok, {"prompt": "Scenario: fever.\nQuestion: cause?", "completion": "An infection."}, instruct)
    target = [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != IGNORE]
    eos = "<|im_end|>" if instruct else "<|endoftext|>"
    assert tok.decode(target) == "An infection." + eos
    prompt = tok.decode(ex["input_ids"][: ex["labels"].index(target[0])])
    assert ("<|im_start|>assistant\n" in prompt) == instruct and "Scenario: fever." in prompt


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
    out = qwenft("train", *TINY, "trainer.max_steps=4", "trainer.val_check_interval=2",
                 "callbacks.checkpoint_every=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and "val/new_word_ppl" in metrics and "train/tokens_per_s" in metrics
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if "val/loss" in h] == [2, 4]
    info = json.loads((run / "run_info.json").read_text())
    assert info["packages"]["torch"].startswith("2.13") and len(info["data_sha256"]["train"]) == 64
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / "adapter" / "adapter_config.json").exists()
    merged = run / "merged"
    manifest = json.loads((merged / "qwenft_vocab.json").read_text())
    tok = AutoTokenizer.from_pretrained(merged)
    word = manifest["new_tokens"][0]
    assert tok.convert_tokens_to_ids(word["form"]) == word["id"]
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    ids = tok("The patient took" + word["form"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, AutoModelForCausalLM.from_pretrained(merged)(ids).logits)
    from transformers import pipeline

    gen = pipeline("text-generation", model=str(merged))
    assert isinstance(gen("Hello", max_new_tokens=3, do_sample=False)[0]["generated_text"], str)


def _final(run):
    weights = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    return json.loads((run / "metrics.json").read_text()), weights


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    args = [*TINY, "trainer.max_steps=6", "trainer.val_check_interval=100", "callbacks.checkpoint_every=3",
            "peft.dropout=0.1"]
    a = qwenft("train", *args, f"hydra.run.dir={tmp_path}/a", cwd=tmp_path)
    assert a.returncode == 0, a.stderr[-3000:]
    killed = qwenft("train", *args, f"hydra.run.dir={tmp_path}/b", cwd=tmp_path, env={"QWENFT_KILL_AT_STEP": "4"})
    assert killed.returncode == -9 and not (tmp_path / "b" / "metrics.json").exists()
    resumed = qwenft("train", *args, "ckpt_path=last", f"hydra.run.dir={tmp_path}/b", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (ma, wa), (mb, wb) = _final(tmp_path / "a"), _final(tmp_path / "b")
    assert mb["global_step"] == ma["global_step"] == 6
    assert mb["train/loss"] == ma["train/loss"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_same_loss_curve(tmp_path):
    args = [*TINY, "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.log_every_n_steps=1"]
    for name in ("a", "b"):
        assert qwenft("train", *args, f"hydra.run.dir={tmp_path}/{name}", cwd=tmp_path).returncode == 0
    curves = []
    for n in ("a", "b"):
        rows = [json.loads(line) for line in (tmp_path / n / "history.jsonl").read_text().splitlines()]
        curves.append([(r["step"], r.get("train/loss"), r.get("val/loss")) for r in rows])  # not the timings
    assert curves[0] == curves[1] and sum(1 for _, t, _ in curves[0] if t is not None) >= 4


def test_resume_with_another_tokenizer_is_refused(tmp_path):
    args = [*TINY, "trainer.max_steps=2", "callbacks.checkpoint_every=2"]
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


def test_sigterm_saves_a_checkpoint_and_stops_cleanly(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from trainutil import ENV

    run = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwenft.cli", "train", *TINY, "trainer.max_steps=100000", "trainer.log_every_n_steps=1",
         "trainer.val_check_interval=100000", "callbacks.checkpoint_every=100000", f"hydra.run.dir={run}"],
        cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((run / "history.jsonl").exists() and "train/loss" in (run / "history.jsonl").read_text()):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert 0 < ckpt["global_step"] < 100000
    assert json.loads((run / "metrics.json").read_text())["global_step"] == ckpt["global_step"]
