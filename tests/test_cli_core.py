"""The CLI verbs of the core: discover -> extend, through the real console script, on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

QWENFT = [sys.executable, "-m", "qwenft.cli"]
ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}


def qwenft(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*QWENFT, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def test_help_lists_the_verbs(tmp_path):
    out = qwenft("--help", cwd=tmp_path)
    assert out.returncode == 0 and "extend" in out.stdout and "discover" in out.stdout
    assert qwenft("bogus", cwd=tmp_path).returncode == 2


def test_discover_then_extend_then_reload(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"text": f"Patient {i} took neurogenix and cardiofloxin; mediventricular fibrosis was seen. Year 2024."}
        for i in range(6)
    ] + [{"text": "The heart is a muscle. Neurogenix once."}]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = qwenft("discover", f"corpus={corpus}", "min_count=3", "max_words=5", f"out={tmp_path}/disc",
                 f"hydra.run.dir={tmp_path}/h1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "disc" / "discover.json").read_text())
    words = [w["word"] for w in report["words"]]
    assert set(words) >= {"neurogenix", "cardiofloxin", "mediventricular"}
    assert "Patient" not in words and "Year" not in words  # already single tokens / numbers never qualify
    savings = [w["saving"] for w in report["words"]]
    assert savings == sorted(savings, reverse=True)
    assert all(w["saving"] == w["count"] * (w["pieces"] - 1) for w in report["words"])
    assert report["tokens_saved_per_1000_words"] == pytest.approx(sum(w["per_1000_words"] for w in report["words"]))
    assert all(w["per_1000_words"] > 0 for w in report["words"])
    assert report["fertility_after"] < report["fertility_before"]

    heldout = tmp_path / "heldout.txt"
    heldout.write_text("The nurse gave neurogenix.\n(cardiofloxin) was stopped.\n")
    out = qwenft("extend", "model=tiny", f"tokenizer.words_file={tmp_path}/disc/words.txt",
                 "tokenizer.init=mean_subword", f"eval_text={heldout}", f"out={tmp_path}/ext",
                 f"hydra.run.dir={tmp_path}/h2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "zero-shot on 2 held-out texts" in out.stdout and "(Qwen's pieces)" in out.stdout
    ext = tmp_path / "ext"
    manifest = json.loads((ext / "qwenft_vocab.json").read_text())
    assert manifest["init"] == "mean_subword" and manifest["rows_after"] == 151936 and manifest["tied"]
    assert manifest["metrics"]["zero_shot_after_init"]["new_word_occurrences"] == 2
    per_word = manifest["metrics"]["per_word"]  # which words pay: pieces vs new token, per word
    assert {r["word"] for r in per_word} <= set(words) and sum(r["occurrences"] for r in per_word) == 2
    assert all(abs(r["delta"] - (r["nll_new"] - r["nll_pieces"])) < 1e-9 for r in per_word)
    assert "zero-shot NLL per word" in out.stdout
    assert {t["word"] for t in manifest["new_tokens"]} == set(words)
    assert (ext / "model.safetensors").exists() and not list(ext.glob("*.bin"))

    tok = AutoTokenizer.from_pretrained(ext)
    model = AutoModelForCausalLM.from_pretrained(ext)
    ids = tok("She took neurogenix.", return_tensors="pt").input_ids
    first = manifest["new_tokens"][0]
    assert tok.convert_tokens_to_ids(first["form"]) == first["id"]
    assert ids[0, 2].item() in {t["id"] for t in manifest["new_tokens"]}
    with torch.no_grad():
        a = model(ids).logits
        b = AutoModelForCausalLM.from_pretrained(ext)(ids).logits
    assert torch.equal(a, b)


def test_extend_rejects_bad_words_with_one_line_and_exit_2(tmp_path):
    out = qwenft("extend", "model=tiny", "tokenizer.words=[ok,'<|im_start|>']", f"out={tmp_path}/x",
                 f"hydra.run.dir={tmp_path}/h", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "special token" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "x").exists()


def test_words_file_errors_name_file_and_line(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("neurogenix\n\tgloss without a word\n")
    out = qwenft("extend", "model=tiny", f"tokenizer.words_file={words}", f"out={tmp_path}/x",
                 f"hydra.run.dir={tmp_path}/h", cwd=tmp_path)
    assert out.returncode == 2 and f"{words}:2:" in out.stderr


@pytest.mark.slow
def test_import_gguf_gives_a_working_untied_qwen2(tmp_path):
    from offline_assets import offline_model_dir

    folder = offline_model_dir()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is False
    assert config["vocab_size"] == 151936 and config["model_type"] == "qwen2"
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])


def test_config_errors_name_the_key(tmp_path):
    out = qwenft("extend", "model=tiny", "tokenizer.words=[neurogenix]", "tokenizer.init=bogus",
                 f"hydra.run.dir={tmp_path}/h", cwd=tmp_path)
    assert out.returncode != 0 and "tokenizer.init" in out.stderr and "mean_subword" in out.stderr
    out = qwenft("extend", "model=tiny", "tokenizer.wrods=[neurogenix]", f"hydra.run.dir={tmp_path}/h", cwd=tmp_path)
    assert out.returncode != 0 and "tokenizer.wrods" in out.stderr


def test_a_single_run_is_composed_and_validated_once_and_a_sweep_validates_each_job(tmp_path, monkeypatch, capsys):
    """Issue 28: the CLI composes a run's config once (as Hydra would) and Hydra runs that very config; a sweep's
    jobs, whose values resolve only inside Hydra, are each validated there."""
    from hydra._internal.hydra import Hydra

    import qwenft.validation
    from tests.badinputs import run_cli

    corpus = tmp_path / "c.txt"
    corpus.write_text("Neurogenix helps. Neurogenix was stopped. Neurogenix again.\n")
    composed, validated = [], []
    real_compose, real_validate = Hydra.compose_config, qwenft.validation.validate
    monkeypatch.setattr(Hydra, "compose_config",
                        lambda self, *a, **k: composed.append(1) or real_compose(self, *a, **k))
    monkeypatch.setattr(qwenft.validation, "validate", lambda *a, **k: validated.append(1) or real_validate(*a, **k))
    res = run_cli(["discover", f"corpus={corpus}", "min_count=2", f"out={tmp_path}/d", f"hydra.run.dir={tmp_path}/h"],
                  monkeypatch, capsys)
    assert res.code == 0 and (tmp_path / "d" / "words.txt").is_file()
    assert (len(composed), len(validated)) == (1, 1)
    assert (tmp_path / "h" / ".hydra" / "overrides.yaml").is_file()  # Hydra still wrote its record of the run

    composed.clear(), validated.clear()
    res = run_cli(["discover", "-m", f"corpus={corpus}", "min_count=2,3", f"out={tmp_path}/s${{min_count}}",
                   f"hydra.sweep.dir={tmp_path}/sweep"], monkeypatch, capsys)
    assert res.code == 0 and (tmp_path / "s2" / "words.txt").is_file() and (tmp_path / "s3").is_dir()
    assert len(validated) == 2 + 2  # each value once before the sweep starts, each job once inside Hydra
