"""HF greedy generation on CPU: fp32 weights vs bf16 autocast vs bf16 weights, side by side in one process.

Why: ``generation.bf16`` used to mean autocast, which re-casts every fp32 weight at every decoding step; the
engines that load their own model now cast it to bf16 instead (``qwenft.clinical.engines.bf16_weights``). This
prints seconds per answer and ratios to fp32, and whether the texts match fp32's.

    python experiments/bench/generation_precision.py [--model offline] [--tokens 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from hydra.utils import instantiate

import qwenft  # noqa: F401 - resolvers
from qwenft.clinical.engines import bf16_weights
from qwenft.clinical.generate import generate_batch
from qwenft.config import compose
from qwenft.train.runinfo import cpu_model

PROMPT = ("A 54-year-old man has had crushing chest pain for two hours. What is the most likely diagnosis? "
          "What test comes first?")


def seconds(model, tok, instruct: bool, tokens: int, bf16: bool) -> tuple[float, str]:  # noqa: ANN001
    generate_batch(model, tok, [PROMPT], instruct, max_new_tokens=4, bf16=bf16)  # warm-up
    start = time.perf_counter()
    text = generate_batch(model, tok, [PROMPT], instruct, max_new_tokens=tokens, bf16=bf16)[0]
    return time.perf_counter() - start, text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="offline")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    loaded = instantiate(compose("answer", [f"model={args.model}"]).model)
    fp32, tok = loaded.model.float(), loaded.tokenizer
    bf16 = copy.deepcopy(fp32)
    bf16_weights(bf16, True)
    arms = {"fp32": (fp32, False), "bf16 autocast (fp32 weights)": (fp32, True), "bf16 weights": (bf16, True)}
    times: dict[str, list[float]] = {a: [] for a in arms}
    texts: dict[str, str] = {}
    for _ in range(args.repeats):  # interleaved, so a busy machine moves every arm alike
        for arm, (model, flag) in arms.items():
            s, texts[arm] = seconds(model, tok, loaded.instruct, args.tokens, flag)
            times[arm].append(s)
    print(f"{cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads, model={args.model}, "
          f"{args.tokens} greedy tokens, best of {args.repeats}")
    base = min(times["fp32"])
    for arm in arms:
        print(f"| {arm} | {min(times[arm]):.2f} s | {min(times[arm]) / base:.2f}x fp32 | "
              f"same text as fp32: {texts[arm] == texts['fp32']} |")


if __name__ == "__main__":
    main()
