"""One benchmark arm in its own process (so its peak RSS is its own): prints one JSON line of stats.

    python -m experiments.bench.arm {qwenft|qwenft_qv|baseline} {tiny|offline} STEPS OUT_JSON

``qwenft`` is the demo as shipped (LoRA r=16 on all seven projections + the new rows); ``qwenft_qv`` is the same
pipeline with the baseline's adapter (LoRA r=8 on q_proj/v_proj, + the new rows), which separates what the
pipeline saves from what training more adapter parameters costs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from experiments.bench.peak import peak_rss_mb, step_flops
from qwenft.data.datamodule import DEMO_DIR
from qwenft.data.decompose import to_training_examples
from qwenft.data.io import load_records
from qwenft.hardware import native_bf16
from qwenft.metrics.newword import new_word_nll
from qwenft.tokenizer.extend import read_words_file

BATCH, MAX_LEN, LR = 8, 192, 3e-4


def baseline_lora() -> tuple[str, ...]:
    """The baseline recipe's adapter as qwenft overrides (imported late: Trainer stays out of the qwenft arms)."""
    from experiments.bench.baseline_recipe import LORA

    return (f"peft.target_modules=[{','.join(LORA['target_modules'])}]", f"peft.r={LORA['r']}",
            f"peft.alpha={LORA['lora_alpha']}")


def demo_examples(split: str) -> list[dict]:
    recs = load_records(DEMO_DIR / f"{split}.jsonl").records
    return [ex for r in recs for ex in to_training_examples(r, "decomposition")]


def heldout() -> list[str]:
    recs = load_records(DEMO_DIR / "val.jsonl").records[:16]
    return ["\n".join([r["scenario"], r["summary"], *r["answers"]]) for r in recs]


def qwenft_train(model: str, steps: int, out_dir: str, extra: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """The demo experiment at the bench's batch/length/lr, no logging or export (+ ``extra`` Hydra overrides, for
    ablations) -> (metrics, the trained run)."""
    from qwenft.config import compose
    from qwenft.train.loop import train_run

    overrides = ["experiment=demo", f"model={model}", "logger=none", "callbacks=none",
                 f"trainer.max_steps={steps}", "trainer.val_check_interval=100000", "validate_before=false",
                 f"data.batch_size={BATCH}", f"data.max_length={MAX_LEN}", f"optim.lr={LR}", "export.enabled=false",
                 f"paths.output_dir={out_dir}", *extra]
    cfg = compose("train", overrides)
    trained = train_run(cfg, run_dir=out_dir)
    return trained.metrics, trained


def qwenft_arm(model: str, steps: int, out_dir: str, extra: tuple[str, ...] = ()) -> dict:
    metrics, trained = qwenft_train(model, steps, out_dir, extra)
    train_rss = peak_rss_mb()  # before the measurements below, which the baseline arm does not run
    module = trained.module
    step = _flops_per_step(module)
    words, _ = read_words_file(DEMO_DIR / "words.txt")
    q = new_word_nll(module.model, trained.tokenizer, heldout(), words)
    return {"tokens_per_s": metrics["train/avg_tokens_per_s"], "pad_fraction": metrics["train/pad_fraction"],
            "val_new_word_ppl": q.new_word_ppl, "val_bits_per_byte": q.bits_per_byte,
            "train_peak_rss_mb": train_rss, **step}


def training_step(module) -> tuple[dict, object]:  # noqa: ANN001
    """(a training batch, a closure running one forward+backward on it as the trainer does)."""
    from qwenft.train.module import label_loss

    batch = next(iter(module.train_loader))
    batch.pop("index")

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16()):
            loss, _ = label_loss(module.model, batch)
        loss.backward()

    return batch, step


def _flops_per_step(module) -> dict:  # noqa: ANN001
    """FLOPs of one real forward+backward on a training batch, and its wall time (at the trainer's precision)."""
    batch, step = training_step(module)

    step()  # warm-up
    t = time.perf_counter()
    step()
    seconds = time.perf_counter() - t
    return {"flops_per_step": step_flops(step), "step_seconds": seconds,
            "step_nonpad_tokens": int(batch["attention_mask"].sum())}


def baseline_arm(model: str, steps: int, out_dir: str) -> dict:
    from experiments.bench.baseline_recipe import run_baseline
    from qwenft.model.sources import tiny

    if model == "tiny":
        folder = Path(out_dir) / "tiny"
        loaded = tiny()
        loaded.model.save_pretrained(folder)
        loaded.tokenizer.save_pretrained(folder)
        model_dir = str(folder)
    else:
        import os

        cache = Path(os.environ.get("QWENFT_CACHE", "~/.cache/qwenft")).expanduser()
        model_dir = str(cache / "offline-qwen2.5-coder-0.5b-instruct")
    words, _ = read_words_file(DEMO_DIR / "words.txt")
    m, tok, stats = run_baseline(model_dir, demo_examples("train"), words, steps, BATCH, MAX_LEN, LR, native_bf16(),
                                 out_dir)
    q = new_word_nll(m, tok, heldout(), words)
    return {"tokens_per_s": stats["tokens_per_s"], "pad_fraction": stats["pad_fraction"],
            "val_new_word_ppl": q.new_word_ppl, "val_bits_per_byte": q.bits_per_byte,
            "train_peak_rss_mb": stats["train_peak_rss_mb"], "flops_per_step": stats["flops_per_step"],
            "step_nonpad_tokens": stats["step_nonpad_tokens"]}


def main() -> None:
    arm, model, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    torch.manual_seed(0)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if arm == "baseline":
            stats = baseline_arm(model, steps, tmp)
        else:
            stats = qwenft_arm(model, steps, tmp, baseline_lora() if arm == "qwenft_qv" else ())
    stats.update(arm=arm, model=model, steps=steps, wall_s=time.perf_counter() - t,
                 peak_rss_mb=peak_rss_mb())
    Path(out).write_text(json.dumps(stats))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
