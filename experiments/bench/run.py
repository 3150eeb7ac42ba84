"""``make bench``: qwenft vs the usual recipe, side by side, as ratios with their targets.

Arms run in separate processes (so peak RSS is each arm's own), one after another on the same machine in one
invocation: the baseline, qwenft as shipped, and qwenft with the baseline's LoRA (see ``arm.py``). Prints a
markdown table and writes it to experiments/bench/RESULTS.md with the command, machine and date.

    python -m experiments.bench.run [--models tiny offline] [--steps-tiny 30] [--steps-offline 12] \
        [--latency-tokens 32]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from experiments.bench.peak import matmul_peak
from qwenft.hardware import native_bf16
from qwenft.train.runinfo import cpu_model

ENGINES_START, ENGINES_END = "<!-- engines:start -->", "<!-- engines:end -->"  # experiments/bench/engines.py


def arm(name: str, model: str, steps: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, "-m", "experiments.bench.arm", name, model, str(steps), f.name], check=True,
                       stdout=subprocess.DEVNULL)
        return json.loads(Path(f.name).read_text())


def latency(model: str, new_tokens: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, "-m", "experiments.bench.latency", model, f.name, "--new-tokens",
                        str(new_tokens)], check=True, stdout=subprocess.DEVNULL)
        return json.loads(Path(f.name).read_text())


def latency_rows(lat: dict) -> list[str]:
    m, n, k = lat["model"], lat["questions"], lat["new_tokens"]
    return [
        f"| {m}: clinical latency, {n} questions + summary batched / one answer alone | {lat['batched_s']:.2f} / "
        f"{lat['single_s']:.2f} s = **{lat['batched_s'] / lat['single_s']:.2f}×** | ≤ 1.5× | {k} new tokens "
        "per text, greedy, KV cache |",
        f"| {m}: batched, every row prefilled in full / shared prefix prefilled once | {lat['unshared_s']:.2f} / "
        f"{lat['batched_s']:.2f} s = {lat['unshared_s'] / lat['batched_s']:.2f}× | | what prefix sharing saves |",
        f"| {m}: one decode step, batch {n + 1} / batch 1 | {lat[f'step{n + 1}_s'] * 1e3:.0f} / "
        f"{lat['step1_s'] * 1e3:.0f} ms = {lat[f'step{n + 1}_s'] / lat['step1_s']:.2f}× | | the floor under "
        "batched / single |",
        f"| {m}: the same {n + 1} prompts one call each / batched | {lat['sequential_s']:.2f} / "
        f"{lat['batched_s']:.2f} s = {lat['sequential_s'] / lat['batched_s']:.2f}× | | what batching saves |",
        f"| {m}: `none` (whole prompt, {(n + 1) * k} new tokens) / batched | {lat['none_s']:.2f} / "
        f"{lat['batched_s']:.2f} s = {lat['none_s'] / lat['batched_s']:.2f}× | | |",
    ]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["tiny", "offline"])
    p.add_argument("--steps-tiny", type=int, default=30)
    p.add_argument("--steps-offline", type=int, default=12)
    p.add_argument("--latency-tokens", type=int, default=32)
    args = p.parse_args()
    peak_bf16, peak_fp32 = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    rows = [f"| matmul peak (torch) | bf16 {peak_bf16 / 1e9:.0f} GFLOP/s, fp32 {peak_fp32 / 1e9:.0f} GFLOP/s | | |"]
    raw = {}
    dtype, peak = ("bf16", peak_bf16) if native_bf16() else ("fp32", peak_fp32)  # what train and the baseline use
    for model in args.models:
        steps = args.steps_tiny if model == "tiny" else args.steps_offline
        b, q, qv = arm("baseline", model, steps), arm("qwenft", model, steps), arm("qwenft_qv", model, steps)
        raw[model] = {"baseline": b, "qwenft": q, "qwenft_qv": qv}
        util = q["flops_per_step"] / q["step_seconds"] / peak
        b_per_token = b["flops_per_step"] / b["step_nonpad_tokens"]
        q_per_token = q["flops_per_step"] / q["step_nonpad_tokens"]
        for name, x, what in ((model, q, "qwenft"), (f"{model}, same LoRA", qv, "qwenft with the baseline's LoRA")):
            rows += [
                f"| {name}: non-pad tokens/s, {what} / baseline | {x['tokens_per_s']:.0f} / "
                f"{b['tokens_per_s']:.0f} = **{x['tokens_per_s'] / b['tokens_per_s']:.2f}×** | ≥ 2× | {steps} steps "
                f"each; pad fraction {x['pad_fraction']:.2f} vs {b['pad_fraction']:.2f} |",
                f"| {name}: peak RSS of the training run, {what} / baseline | {x['train_peak_rss_mb']:.0f} / "
                f"{b['train_peak_rss_mb']:.0f} MB = **{x['train_peak_rss_mb'] / b['train_peak_rss_mb']:.2f}×** | ≤ 1× "
                f"| process peak incl. evaluation {x['peak_rss_mb']:.0f} / {b['peak_rss_mb']:.0f} MB |",
                f"| {name}: val new-word ppl after {steps} steps, {what} vs baseline | {x['val_new_word_ppl']:.3g} vs "
                f"{b['val_new_word_ppl']:.3g} | qwenft lower | bits/byte {x['val_bits_per_byte']:.3f} vs "
                f"{b['val_bits_per_byte']:.3f} |",
            ]
        rows += [
            f"| {model}: hardware utilisation of a qwenft step (counted FLOPs / time / {dtype} peak) | "
            f"{q['flops_per_step'] / 1e12:.2f} TFLOP in {q['step_seconds']:.2f} s = **{100 * util:.0f} %** | ≥ 50 % | "
            f"baseline: {100 * b_per_token * b['tokens_per_s'] / peak:.0f} % (its FLOPs/token × its tokens/s) |",
            f"| {model}: training FLOPs per non-pad token, baseline / qwenft | {b_per_token / 1e9:.2f} / "
            f"{q_per_token / 1e9:.2f} GFLOP = {b_per_token / q_per_token:.2f}× | | the speed-up left at equal "
            "hardware efficiency |",
        ]
        lat = latency(model, args.latency_tokens)
        raw[model]["latency"] = lat
        rows += latency_rows(lat)
    table = "| measure | result | target | note |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    stamp = (f"{datetime.date.today()} on {cpu_model()} ({platform.machine()}, {torch.get_num_threads()} threads, "
             f"both arms in {dtype}), torch "
             f"{torch.__version__}; command: `python -m experiments.bench.run {' '.join(sys.argv[1:])}`")
    print(table + "\n" + stamp)
    out = Path(__file__).with_name("RESULTS.md")
    old = out.read_text() if out.exists() else ""
    # the HF vs vLLM section (experiments/bench/engines.py) is its own run: keep it
    engines = old[old.index(ENGINES_START):old.index(ENGINES_END) + len(ENGINES_END)] + "\n" \
        if ENGINES_START in old and ENGINES_END in old else ""
    out.write_text(f"# Benchmark results\n\n{stamp}\n\n{table}\n```json\n{json.dumps(raw, indent=1)}\n```\n"
                   + (f"\n{engines}" if engines else ""))


if __name__ == "__main__":
    main()
