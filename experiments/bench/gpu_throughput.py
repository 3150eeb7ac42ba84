"""Training throughput on one GPU, side by side in one run: qwenft at its best settings vs the usual recipe vs qwenft
as it was before issue 29. Non-pad tokens/s, MFU and peak memory, on Qwen2.5-0.5B's shape with random weights.

    python -m experiments.bench.gpu_throughput --out $OUT                          # the GPU run (< 6 min)
    python -m experiments.bench.gpu_throughput --device cpu --tiny --out DIR       # the dry run (its test)

How to run it on the device machine: ``experiments/results/gpu_throughput/README.md``.

Arms (every arm trains the same model shape on the same examples, one after another in this process; each arm's
peak memory is its own: ``torch.cuda.reset_peak_memory_stats`` before it is built, everything freed after):

* ``recipe``: the usual recipe, ``experiments/bench/baseline_recipe.py`` (``AutoTokenizer.add_tokens`` +
  ``resize_token_embeddings``, ``datasets.map``, ``DataCollatorForLanguageModeling`` padding, PEFT LoRA r=8 on
  q_proj/v_proj, HF ``Trainer`` with ``bf16=True``), ``--recipe-batch`` examples a step;
* ``qwenft_today``: qwenft's defaults before issue 29 on a GPU: ``data.batch_size=8`` length-grouped, float32 frozen
  weights under bf16 autocast, the dense head loss, AdamW's CUDA default (foreach), no compile;
* ``qwenft_best``: ``data.tokens_per_batch`` (packed rows of ``data.pack_length``, sdpa), ``head_loss=auto`` (Liger
  when installed, else chunked), ``frozen_dtype=auto`` (bf16), fused AdamW, ``compile=true``;
* ``qwenft_best_flex``: the same with ``model.attn_implementation=flex_attention`` (block-sparse mask: rows can be
  long); ``qwenft_best_nocompile``: without ``compile``; ``qwenft_best_4k``: ``tokens_per_batch=4096`` (memory).

Profiles (sequence lengths): ``demo`` = the bundled demo's training examples (data.max_length=192, ~150 tokens);
``medquad`` = synthetic examples whose prompt/completion token lengths are those of 1000 MedQuAD pairs
(``medquad_lengths.json``; median 239, mean 330, 15 % over 512), data.max_length=512.

Counted FLOPs of a step (no recomputation counted; only non-pad tokens; what the arm's step must compute):

    tokens * (4 * N_frozen + 6 * N_trained)            decoder-layer matmuls: forward 2N, activation gradients 2N,
                                                       weight gradients 2N only for trained weights (LoRA)
  + sum over sequences of 6 * s^2 * d_attn * layers    causal attention: QK^T and AV forward (2 s^2 d, causal half),
                                                       their backward twice that
  + labels * (4 * d * V + 2 * d * R)                   the head at the positions it is computed for the loss
                                                       (qwenft: label positions; the recipe: every non-pad position),
                                                       forward + gradient to the hidden states, weight gradient of
                                                       its R trained rows

MFU = counted FLOPs of the timed steps / their wall time / the device's dense bf16 peak (H200/H100: 989 TFLOP/s;
``--peak-tflops`` for others; on CPU a measured matmul peak). Tokens/s = non-pad tokens of the timed steps / their
wall time (from the end of the last warm-up step to the end of the last step, CUDA synchronised: data loading and
framework overhead included, for every arm alike).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytorch_lightning as pl
import torch

SHAPE_05B = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
             "intermediate_size": 4864, "tie_word_embeddings": True}
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
MEDQUAD_LENGTHS = Path(__file__).with_name("medquad_lengths.json")
ARMS = ("recipe", "qwenft_today", "qwenft_best", "qwenft_best_flex", "qwenft_best_nocompile", "qwenft_best_4k")
TINY_ARMS = ("recipe", "qwenft_today", "qwenft_best")
MAX_LENGTH = {"demo": 192, "medquad": 512}


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StepClock(pl.Callback):
    """Per training step (after the optimizer step): end time, non-pad tokens, label positions, sum of squared
    sequence lengths (the attention term of the FLOP count)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):  # noqa: ANN001
        _sync()
        examples = trainer.datamodule.train_set.examples  # an example's "index" is its position here
        lengths = [len(examples[i]["input_ids"]) for i in batch["index"].tolist()]
        self.rows.append({"t": time.perf_counter(), "tokens": int(module._nonpad), "slots": batch["input_ids"].numel(),
                          "labels": int((batch["labels"][:, 1:] != -100).sum()), "sq": sum(n * n for n in lengths)})


def counts(model: torch.nn.Module) -> dict:
    """What the FLOP formula needs, read off the (wrapped) model."""
    from qwenft.train.module import backbone_and_head

    backbone, head = backbone_and_head(model)
    cfg = backbone.config
    frozen = trained = 0
    for _, p in backbone.layers.named_parameters():
        if p.ndim == 2:
            if p.requires_grad:
                trained += p.numel()
            else:
                frozen += p.numel()
    head_params = [p for p in head.parameters()]
    vocab = max(p.shape[0] for p in head_params if p.ndim == 2)
    rows = sum(p.shape[0] for p in head_params if p.requires_grad and p.ndim == 2)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return {"layers": cfg.num_hidden_layers, "d": cfg.hidden_size, "d_attn": cfg.num_attention_heads * head_dim,
            "vocab": vocab, "n_frozen": frozen, "n_trained": trained, "head_rows_trained": min(rows, vocab)}


def flops(c: dict, tokens: int, labels: int, sq: int) -> float:
    """Counted FLOPs of steps holding ``tokens`` non-pad tokens, ``labels`` head positions, sum of s^2 ``sq``."""
    return (tokens * (4 * c["n_frozen"] + 6 * c["n_trained"]) + 6 * sq * c["d_attn"] * c["layers"]
            + labels * (4 * c["d"] * c["vocab"] + 2 * c["d"] * c["head_rows_trained"]))


def medquad_records(n: int, seed: int = 0) -> list[dict]:
    """Prompt/completion texts with MedQuAD's token lengths: " the" is one Qwen2.5 token; ~30 tokens of the prompt
    are the chat template's."""
    pairs = json.loads(MEDQUAD_LENGTHS.read_text())["pairs"]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p, c = rng.choice(pairs)
        out.append({"prompt": "the" + " the" * max(p - 31, 0), "completion": "the" + " the" * max(c - 2, 0)})
    return out


def qwenft_overrides(arm: str, args, profile: str, data_file: Path | None, cuda: bool) -> list[str]:
    shape = [] if args.tiny else [f"model.{k}={str(v).lower()}" for k, v in SHAPE_05B.items()]
    base = ["model=tiny", *shape, "tokenizer=extend", "tokenizer.words_file=${demo:words.txt}",
            "tokenizer.init=mean_subword", "tokenizer.rows_lr=5e-3", "peft.dropout=0.0", "optim.lr=3e-4",
            "scheduler.num_warmup_steps=3", "logger=none", "callbacks=none",
            "+callbacks.clock._target_=experiments.bench.gpu_throughput.StepClock", "validate_before=false",
            "export.enabled=false", "trainer.val_check_interval=100000", f"trainer={'gpu' if cuda else 'cpu'}",
            f"trainer.max_steps={args.warmup + args.steps}", f"data.max_length={MAX_LENGTH[profile]}",
            "data.max_val_examples=8"]
    if data_file is not None:
        base.append(f"data.train_path={data_file}")
    if not arm:
        return base
    if arm == "qwenft_today":
        return [*base, "data.batch_size=8", "data.packing=false", "frozen_dtype=float32", "head_loss=dense",
                *(["+optim.foreach=true"] if cuda else [])]  # AdamW's own default on CUDA, not fused
    budget = 4096 if arm == "qwenft_best_4k" else args.tokens_per_batch
    row = min(budget, args.pack_length_flex if arm == "qwenft_best_flex" else args.pack_length)
    best = [*base, f"data.tokens_per_batch={budget}", "data.packing=true", f"data.pack_length={row}",
            "frozen_dtype=auto", f"compile={str(args.compile and arm != 'qwenft_best_nocompile').lower()}"]
    best += ["head_loss=chunked", "head_loss_chunk=256"] if args.tiny else ["head_loss=auto"]  # tiny: exercise it
    if arm == "qwenft_best_flex":
        best.append("model.attn_implementation=flex_attention")
    return best


def run_qwenft(arm: str, args, profile: str, data_file: Path | None, cuda: bool, tmp: Path) -> dict:
    from qwenft.config import compose
    from qwenft.train.loop import train_run

    overrides = qwenft_overrides(arm, args, profile, data_file, cuda)
    out = tmp / arm
    cfg = compose("train", [*overrides, f"paths.output_dir={out}"])
    trained = train_run(cfg, run_dir=out)
    # by name: run as a script this module is __main__, the config instantiates experiments.bench.gpu_throughput's
    clock = next(c for c in trained.trainer.callbacks if type(c).__name__ == "StepClock")
    module = trained.module
    timed = clock.rows[args.warmup:]
    seconds = timed[-1]["t"] - clock.rows[args.warmup - 1]["t"]
    c = counts(module.model)
    stats = _stats(c, timed, seconds)
    common = set(qwenft_overrides("", args, profile, data_file, cuda))  # what every qwenft arm shares
    stats["settings"] = " ".join(o for o in overrides if o not in common)
    stats["head_loss"] = module.head_loss
    del trained, module, clock
    return stats


def _stats(c: dict, timed: list[dict], seconds: float) -> dict:
    tokens = sum(r["tokens"] for r in timed)
    labels = sum(r["labels"] for r in timed)
    counted = flops(c, tokens, labels, sum(r["sq"] for r in timed))
    return {"steps_timed": len(timed), "seconds": seconds, "tokens_per_s": tokens / seconds,
            "tokens_per_step": tokens / len(timed), "labels_per_step": labels / len(timed),
            "pad_fraction": 1 - tokens / max(sum(r["slots"] for r in timed), 1), "flops": counted,
            "flops_per_token": counted / tokens, "tflops_per_s": counted / seconds / 1e12, "counts": c}


def run_recipe(args, profile: str, records: list[dict], cuda: bool, tmp: Path) -> dict:
    from experiments.bench.baseline_recipe import run_baseline
    from qwenft.data.datamodule import DEMO_DIR
    from qwenft.model.sources import tiny
    from qwenft.tokenizer.extend import read_words_file

    loaded = tiny(**({} if args.tiny else SHAPE_05B))
    words, _ = read_words_file(DEMO_DIR / "words.txt")
    bf16 = cuda or __import__("qwenft.hardware", fromlist=["native_bf16"]).native_bf16()
    model, _, raw = run_baseline("", records, words, args.warmup + args.steps, args.recipe_batch,
                                 MAX_LENGTH[profile], 3e-4, bf16, str(tmp / "recipe"), use_cpu=not cuda,
                                 loaded=(loaded.model, loaded.tokenizer), count_flops=False, warmup=args.warmup)
    c = counts(model)
    sq = sum(n * n for n in raw["sequence_lengths"])
    timed = [{"tokens": raw["nonpad_tokens"], "labels": raw["label_tokens"], "sq": sq,
              "slots": round(raw["nonpad_tokens"] / max(1 - raw["pad_fraction"], 1e-9))}]
    stats = _stats(c, timed, raw["seconds"])
    stats.update(steps_timed=raw["timed_steps"], tokens_per_step=raw["nonpad_tokens"] / max(raw["timed_steps"], 1),
                 labels_per_step=raw["label_tokens"] / max(raw["timed_steps"], 1),
                 settings=f"HF Trainer, LoRA r=8 q/v, padded batches of {args.recipe_batch}, bf16={bf16}")
    del model
    return stats


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        torch._dynamo.reset()  # compiled graphs of the previous arm
    except Exception:  # noqa: BLE001
        pass


def peak_flops(args, cuda: bool) -> tuple[float, str]:
    if args.peak_tflops:
        return args.peak_tflops * 1e12, "given (--peak-tflops)"
    if cuda:
        name = torch.cuda.get_device_name(0)
        for key, value in PEAK_BF16.items():
            if key in name:
                return value, f"{name}: dense bf16 spec"
    from experiments.bench.peak import matmul_peak
    from qwenft.hardware import native_bf16

    if cuda:
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        torch.mm(a, a)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            torch.mm(a, a)
        torch.cuda.synchronize()
        return 10 * 2 * 8192**3 / (time.perf_counter() - t), "measured bf16 matmul"
    dtype = torch.bfloat16 if native_bf16() else torch.float32
    return matmul_peak(dtype, n=1024, repeats=2), f"measured {str(dtype).removeprefix('torch.')} matmul (CPU)"


def table(results: list[dict], peak: float) -> str:
    lines = ["| profile | arm | non-pad tokens/s | MFU | peak mem GiB (alloc / reserved) | tokens/step | pad | "
             "head loss | settings |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['profile']} | {r['arm']} | — | — | — | — | — | — | {r['error'][:160]} |")
            continue
        lines.append(f"| {r['profile']} | {r['arm']} | {r['tokens_per_s']:,.0f} | {100 * r['mfu']:.1f} % | "
                     f"{r['peak_alloc_gib']:.2f} / {r['peak_reserved_gib']:.2f} | {r['tokens_per_step']:,.0f} | "
                     f"{r['pad_fraction']:.2f} | {r.get('head_loss', 'dense (HF)')} | `{r['settings']}` |")
    return "\n".join(lines)


def verdicts(results: list[dict]) -> list[str]:
    """The issue's targets per profile: best qwenft arm >= 35 % MFU, >= 2x the recipe's tokens/s, memory <= it."""
    out = []
    for profile in dict.fromkeys(r["profile"] for r in results):
        rows = {r["arm"]: r for r in results if r["profile"] == profile and "error" not in r}
        recipe = rows.get("recipe")
        ours = [r for a, r in rows.items() if a.startswith("qwenft_best")]
        if not ours or recipe is None:
            out.append(f"- {profile}: not enough arms ran for a verdict")
            continue
        best = max(ours, key=lambda r: r["tokens_per_s"])
        today = rows.get("qwenft_today")
        out.append(f"- {profile}: fastest qwenft arm `{best['arm']}`: {best['tokens_per_s']:,.0f} tokens/s = "
                   f"**{best['tokens_per_s'] / recipe['tokens_per_s']:.2f}×** the recipe (target ≥ 2×)"
                   + (f", {best['tokens_per_s'] / today['tokens_per_s']:.2f}× qwenft_today" if today else "")
                   + f"; MFU **{100 * best['mfu']:.1f} %** (target ≥ 35 %); peak memory "
                   f"{best['peak_alloc_gib']:.2f} vs {recipe['peak_alloc_gib']:.2f} GiB = "
                   f"**{best['peak_alloc_gib'] / max(recipe['peak_alloc_gib'], 1e-9):.2f}×** (target ≤ 1×)")
        lean = [r for r in ours if r["peak_alloc_gib"] <= recipe["peak_alloc_gib"]]
        if lean and best not in lean:
            b = max(lean, key=lambda r: r["tokens_per_s"])
            out.append(f"  - within the recipe's memory: `{b['arm']}` {b['tokens_per_s']:,.0f} tokens/s = "
                       f"{b['tokens_per_s'] / recipe['tokens_per_s']:.2f}×, MFU {100 * b['mfu']:.1f} %")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu_throughput.json and gpu_throughput.md")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--tiny", action="store_true", help="model=tiny's shape instead of Qwen2.5-0.5B's (dry run)")
    p.add_argument("--profiles", nargs="+", default=None, choices=list(MAX_LENGTH))
    p.add_argument("--arms", nargs="+", default=None, choices=ARMS)
    p.add_argument("--warmup", type=int, default=None, help="steps not timed (compilation happens here)")
    p.add_argument("--steps", type=int, default=None, help="timed steps")
    p.add_argument("--tokens-per-batch", type=int, default=None)
    p.add_argument("--pack-length", type=int, default=1024, help="packed row length, sdpa arms")
    p.add_argument("--pack-length-flex", type=int, default=4096, help="packed row length, flex_attention arm")
    p.add_argument("--recipe-batch", type=int, default=16)
    p.add_argument("--medquad-examples", type=int, default=None)
    p.add_argument("--no-compile", dest="compile", action="store_false", default=None)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--budget-s", type=float, default=330, help="arms not started after this many seconds are skipped")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here (use --device cpu --tiny for the dry run)")
    tiny_defaults = {"profiles": ["demo"], "arms": list(TINY_ARMS), "warmup": 1, "steps": 2, "tokens_per_batch": 1024,
                     "medquad_examples": 64, "compile": False}
    gpu_defaults = {"profiles": ["medquad", "demo"], "arms": list(ARMS), "warmup": 5, "steps": 15,
                    "tokens_per_batch": 16384, "medquad_examples": 2000, "compile": True}
    for k, v in (tiny_defaults if args.tiny else gpu_defaults).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.warmup = max(args.warmup, 1)  # the timed window starts at the end of the last warm-up step
    args.pack_length = max(args.pack_length, max(MAX_LENGTH[pr] for pr in args.profiles))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    peak, peak_how = peak_flops(args, cuda)
    results: list[dict] = []
    from experiments.bench.arm import demo_examples

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data: dict[str, tuple[list[dict], Path | None]] = {}
        for profile in args.profiles:
            if profile == "medquad":
                records = medquad_records(args.medquad_examples)
                data_file = tmp / "medquad_like.jsonl"
                data_file.write_text("".join(json.dumps(r) + "\n" for r in records))
                data[profile] = records, data_file
            else:
                data[profile] = demo_examples("train"), None
        core = [a for a in args.arms if a in TINY_ARMS]  # the three arms for every profile before any extra
        order = [(pr, a) for group in (core, [a for a in args.arms if a not in core]) for pr in args.profiles
                 for a in group]
        for profile, arm in order:
            records, data_file = data[profile]
            row = {"profile": profile, "arm": arm}
            if time.perf_counter() - t0 > args.budget_s:
                results.append({**row, "error": f"skipped: --budget-s {args.budget_s:.0f} s spent"})
                continue
            _free()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            try:
                torch.manual_seed(0)
                stats = (run_recipe(args, profile, records, cuda, tmp) if arm == "recipe" else
                         run_qwenft(arm, args, profile, data_file, cuda, tmp))
            except Exception as err:  # noqa: BLE001 - one arm failing must not lose the others' numbers
                traceback.print_exc()
                first = str(err).splitlines()[0] if str(err) else ""
                results.append({**row, "error": f"{type(err).__name__}: {first}"})
                continue
            if cuda:
                stats["peak_alloc_gib"] = torch.cuda.max_memory_allocated() / 2**30
                stats["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
            else:  # one process: the peak RSS so far, not the arm's own
                from experiments.bench.peak import peak_rss_mb

                stats["peak_alloc_gib"] = stats["peak_reserved_gib"] = peak_rss_mb() / 1024
            stats.update(row, mfu=stats["flops"] / stats["seconds"] / peak, wall_s=time.perf_counter() - start)
            results.append(stats)
            print(json.dumps({k: v for k, v in stats.items() if k != "counts"}), flush=True)
            _free()
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
                                                         f"{torch.get_num_threads()} threads)"
    versions = {m: __import__(m).__version__ for m in ("torch", "transformers", "peft", "pytorch_lightning")}
    from qwenft.train.head_loss import liger_available

    report = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "device": device,
              "command": "python -m experiments.bench.gpu_throughput " + " ".join(sys.argv[1:] if argv is None
                                                                                    else argv),
              "model": "model=tiny (2 x 64)" if args.tiny else f"random Qwen2.5-0.5B shape {SHAPE_05B}",
              "peak_flops": peak, "peak_how": peak_how, "versions": versions, "liger": liger_available(),
              "wall_s": time.perf_counter() - t0, "args": vars(args), "results": results}
    md = (f"# GPU throughput: qwenft vs the usual recipe\n\n{report['date']} on {device}; {report['model']}; torch "
          f"{versions['torch']}, transformers {versions['transformers']}, peft {versions['peft']}; Liger installed: "
          f"{report['liger']}; peak for MFU {peak / 1e12:.3g} TFLOP/s ({peak_how}); {args.warmup} warm-up + "
          f"{args.steps} timed steps per arm; total {report['wall_s']:.0f} s.\n\nCommand: `{report['command']}`\n\n"
          f"{table(sorted(results, key=lambda r: (args.profiles.index(r['profile']), ARMS.index(r['arm']))), peak)}"
          "\n\n" + "\n".join(verdicts(results)) + "\n\nFLOPs counted as in "
          "`experiments/bench/gpu_throughput.py`'s docstring (no recomputation, non-pad tokens only).\n")
    (out_dir / "gpu_throughput.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "gpu_throughput.md").write_text(md)
    print(md)
    return report


if __name__ == "__main__":
    main()
