"""The usual recipe, implemented faithfully as the benchmark's baseline arm.

``AutoTokenizer`` + ``add_tokens`` + ``resize_token_embeddings(len(tokenizer))``, ``datasets.map`` tokenization
of ``prompt + eos + completion``, ``DataCollatorForLanguageModeling(mlm=False)`` with padding, LoRA r=8 on
q_proj/v_proj, HF ``Trainer``. Changes made only so that it runs here: ``use_cpu=True``, ``report_to=[]``,
``save_strategy="no"``, a pad token set (Qwen's tokenizer has one; the collator needs it), and the
``model.config.use_cache=False`` that Trainer warns about. It trains on the whole sequence (prompt included),
as the recipe does; its new rows never receive gradients.
"""

from __future__ import annotations

import time

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from experiments.bench.peak import peak_rss_mb, step_flops

LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}  # the recipe's adapter


class _Clock(TrainerCallback):
    """Times optimizer steps after the first ``warmup`` and counts the non-pad tokens they consumed."""

    def __init__(self, warmup: int = 1) -> None:
        self.start: float | None = None
        self.steps = 0
        self.warmup = warmup

    def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
        if state.global_step == self.warmup and self.start is None:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()  # the warm-up steps' queued kernels are not the timed steps'
            self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
        if self.start is not None:
            self.steps += 1


def run_baseline(
    model_dir: str,
    records: list[dict],
    words: list[str],
    steps: int,
    batch_size: int,
    max_length: int,
    lr: float,
    bf16: bool,
    out_dir: str,
    seed: int = 0,
    use_cpu: bool = True,
    loaded: tuple | None = None,
    count_flops: bool = True,
    warmup: int = 1,
):
    """Returns (model, tokenizer, stats) after ``steps`` optimizer steps.

    ``loaded``: an already built (model, tokenizer) instead of ``model_dir`` (the GPU bench's random 0.5B shape);
    ``use_cpu=False`` lets Trainer take the GPU; ``count_flops=False`` skips the FlopCounterMode step."""
    if loaded is None:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    else:
        model, tokenizer = loaded
    tokenizer.add_tokens(words)
    model.resize_token_embeddings(len(tokenizer))
    model.config.use_cache = False
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in records])
    ds = ds.map(
        lambda ex: tokenizer(ex["prompt"] + tokenizer.eos_token + ex["completion"], truncation=True,
                             max_length=max_length),
        remove_columns=["prompt", "completion"],
    )
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
    model = get_peft_model(model, LoraConfig(**LORA, task_type="CAUSAL_LM"))
    args = TrainingArguments(
        output_dir=out_dir, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=lr,
        bf16=bf16, use_cpu=use_cpu, report_to=[], save_strategy="no", logging_steps=max(steps, 1), seed=seed,
        lr_scheduler_type="cosine", warmup_steps=max(1, steps // 10), dataloader_num_workers=0,
    )
    clock = _Clock(warmup)
    nonpad = {"tokens": 0, "slots": 0}
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator, callbacks=[clock])
    original = trainer.training_step

    def counting_step(model, inputs, *a, **kw):  # noqa: ANN001
        if clock.start is not None:
            nonpad["tokens"] += int(inputs["attention_mask"].sum())
            nonpad["labels"] = nonpad.get("labels", 0) + int((inputs["labels"][:, 1:] != -100).sum())
            nonpad["lengths"] = nonpad.get("lengths", []) + inputs["attention_mask"].sum(1).tolist()
            nonpad["slots"] += inputs["attention_mask"].numel()
        return original(model, inputs, *a, **kw)

    trainer.training_step = counting_step
    trainer.train()
    if not use_cpu and torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - (clock.start or time.perf_counter())
    train_rss = peak_rss_mb()  # before the FLOP count below
    stats = {"timed_steps": clock.steps, "seconds": elapsed, "nonpad_tokens": nonpad["tokens"],
             "tokens_per_s": nonpad["tokens"] / elapsed if elapsed else float("nan"),
             "pad_fraction": 1 - nonpad["tokens"] / max(nonpad["slots"], 1), "train_peak_rss_mb": train_rss,
             "label_tokens": nonpad.get("labels", 0), "sequence_lengths": nonpad.get("lengths", []),
             **(_step_flops(trainer) if count_flops else {})}
    return model, tokenizer, stats


def _step_flops(trainer: Trainer) -> dict:
    """FLOPs of one of its training batches (forward + backward, as ``Trainer`` runs it), for work per token."""
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.train()

    def step() -> None:
        with trainer.compute_loss_context_manager():
            trainer.compute_loss(trainer.model, inputs).backward()

    flops = step_flops(step)
    trainer.model.zero_grad(set_to_none=True)
    return {"flops_per_step": flops, "step_nonpad_tokens": int(inputs["attention_mask"].sum())}
