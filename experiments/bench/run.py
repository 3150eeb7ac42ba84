"""``make bench``: qwenft vs the usual recipe, side by side, as ratios with their targets.

Arms run in separate processes (so peak RSS is each arm's own), alternating on the same machine in one
invocation. Prints a markdown table and writes it to experiments/bench/RESULTS.md with the command, machine
and date.

    python -m experiments.bench.run [--models tiny offline] [--steps-tiny 30] [--steps-offline 12]
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


def arm(name: str, model: str, steps: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, "-m", "experiments.bench.arm", name, model, str(steps), f.name], check=True,
                       stdout=subprocess.DEVNULL)
        return json.loads(Path(f.name).read_text())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["tiny", "offline"])
    p.add_argument("--steps-tiny", type=int, default=30)
    p.add_argument("--steps-offline", type=int, default=12)
    args = p.parse_args()
    peak_bf16, peak_fp32 = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    rows = [f"| matmul peak (torch) | bf16 {peak_bf16 / 1e9:.0f} GFLOP/s, fp32 {peak_fp32 / 1e9:.0f} GFLOP/s | | |"]
    raw = {}
    for model in args.models:
        steps = args.steps_tiny if model == "tiny" else args.steps_offline
        b, q = arm("baseline", model, steps), arm("qwenft", model, steps)
        raw[model] = {"baseline": b, "qwenft": q}
        util = q["flops_per_step"] / q["step_seconds"] / peak_bf16
        rows += [
            f"| {model}: non-pad tokens/s, qwenft / baseline | {q['tokens_per_s']:.0f} / {b['tokens_per_s']:.0f} "
            f"= **{q['tokens_per_s'] / b['tokens_per_s']:.2f}×** | ≥ 2× | {steps} steps each |",
            f"| {model}: peak RSS, qwenft / baseline | {q['peak_rss_mb']:.0f} / {b['peak_rss_mb']:.0f} MB "
            f"= **{q['peak_rss_mb'] / b['peak_rss_mb']:.2f}×** | ≤ 1× | |",
            f"| {model}: val new-word ppl after {steps} steps, qwenft vs baseline | {q['val_new_word_ppl']:.3g} vs "
            f"{b['val_new_word_ppl']:.3g} | qwenft lower | bits/byte {q['val_bits_per_byte']:.3f} vs "
            f"{b['val_bits_per_byte']:.3f} |",
            f"| {model}: hardware utilisation of a qwenft step (counted FLOPs / time / bf16 peak) | "
            f"{q['flops_per_step'] / 1e12:.2f} TFLOP in {q['step_seconds']:.2f} s = **{100 * util:.0f} %** | ≥ 50 % | |",
        ]
    table = "| measure | result | target | note |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    stamp = (f"{datetime.date.today()} on {platform.machine()} ({torch.get_num_threads()} threads), torch "
             f"{torch.__version__}; command: `python -m experiments.bench.run {' '.join(sys.argv[1:])}`")
    print(table + "\n" + stamp)
    out = Path(__file__).with_name("RESULTS.md")
    out.write_text(f"# Benchmark results\n\n{stamp}\n\n{table}\n```json\n{json.dumps(raw, indent=1)}\n```\n")


if __name__ == "__main__":
    main()
