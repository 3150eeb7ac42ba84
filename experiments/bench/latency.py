"""Clinical answering latency: one prompt with 4 questions, answered three ways, in its own process.

    python -m experiments.bench.latency {tiny|offline} OUT_JSON [--new-tokens 32] [--repeats 3]

- ``batched``: the ``decomposition`` strategy as shipped, summary + 4 sub-questions in ONE ``generate`` call,
  their shared prefix (chat header + scenario) prefilled once;
- ``unshared``: the same call with every row prefilled in full (what the shared prefix saves);
- ``sequential``: the same 5 prompts, one ``generate`` call each (what a naive loop does);
- ``none``: the whole prompt in, the whole response out (one call, a token budget of 5 texts);
- ``single``: one sub-question alone: the unit the target is stated in (batched <= 1.5x single);
- ``step1`` / ``step5``: one forward of one new token at batch 1 and at batch 5 -- the floor under
  batched/single once prefill is shared, since every decode step of the batch costs a batch-5 step.

Every text is generated to exactly ``new_tokens`` tokens (EOS is suppressed via ``min_new_tokens``), so the
arms differ only in how the work is batched, not in how early a model happens to stop. Retrieval is off: this
measures generation, which is where the time goes. Medians of ``repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import qwenft.clinical.generate as generate_mod
from qwenft.clinical.generate import generate_batch
from qwenft.data.datamodule import DEMO_DIR
from qwenft.data.io import load_records
from qwenft.data.prompts import question_prompt, summary_prompt, whole_prompt
from qwenft.hardware import native_bf16

N_QUESTIONS = 4


def prompt_set() -> tuple[list[str], str]:
    """The first bundled test vignette with >= 4 questions -> (summary + 4 question prompts, whole prompt)."""
    rec = next(r for r in load_records(DEMO_DIR / "test.jsonl").records if len(r["questions"]) >= N_QUESTIONS)
    questions = rec["questions"][:N_QUESTIONS]
    return [summary_prompt(rec["scenario"]), *(question_prompt(rec["scenario"], q) for q in questions)], \
        whole_prompt(rec["scenario"], questions)


def load(model: str):  # noqa: ANN201 - Loaded
    from hydra.utils import instantiate

    from qwenft.config import compose

    return instantiate(compose("answer", [f"model={model}"]).model)


def median_seconds(fn, repeats: int) -> float:  # noqa: ANN001
    fn()  # warm-up: first-call allocations and autocast caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(model: str, new_tokens: int = 32, repeats: int = 3) -> dict:
    loaded = load(model)
    m, tok, instruct = loaded.model, loaded.tokenizer, loaded.instruct
    m.generation_config.min_new_tokens = new_tokens  # fixed-length outputs in every arm (see module docstring)
    prompts, whole = prompt_set()

    def gen(ps: list[str], n: int = new_tokens) -> list[str]:
        m.generation_config.min_new_tokens = n
        return generate_batch(m, tok, ps, instruct, max_new_tokens=n, bf16=native_bf16())

    def unshared() -> list[str]:
        shared_min, generate_mod.MIN_SHARED_PREFIX = generate_mod.MIN_SHARED_PREFIX, 1 << 30
        try:
            return gen(prompts)
        finally:
            generate_mod.MIN_SHARED_PREFIX = shared_min

    @torch.inference_mode()
    def step(batch: int) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16()):
            m(input_ids=torch.full((batch, 1), tok.pad_token_id), logits_to_keep=1)

    t = {
        "single": median_seconds(lambda: gen(prompts[1:2]), repeats),
        "batched": median_seconds(lambda: gen(prompts), repeats),
        "unshared": median_seconds(unshared, repeats),
        "step1": median_seconds(lambda: step(1), repeats),
        f"step{len(prompts)}": median_seconds(lambda: step(len(prompts)), repeats),
        "sequential": median_seconds(lambda: [gen([p]) for p in prompts], repeats),
        "none": median_seconds(lambda: gen([whole], new_tokens * len(prompts)), repeats),
    }
    return {"model": model, "questions": N_QUESTIONS, "new_tokens": new_tokens, "repeats": repeats,
            **{f"{k}_s": v for k, v in t.items()}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("out_json")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    Path(args.out_json).write_text(json.dumps(measure(args.model, args.new_tokens, args.repeats)))


if __name__ == "__main__":
    main()
