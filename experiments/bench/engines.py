"""HF vs vLLM on the same prompts, side by side in one run (``python -m experiments.bench.engines``).

    python -m experiments.bench.engines [--model offline] [--new-tokens 32] [--prompts 8] [--repeats 3] [--no-cli]

Rows (each engine in the precision `--hf-bf16` / `--vllm-bf16` give; auto: bf16 where the CPU has native bf16):

- **batched / one answer**, per engine: the first bundled vignette with 4 questions, summary + 4 answers in one
  call (HF: one batched ``generate`` with the shared-prefix prefill; vLLM: one request of 5 token-id prompts,
  prefix caching) against one answer alone; every text is exactly ``new_tokens`` long (EOS suppressed), medians
  of ``repeats`` after a warm-up. Target on vLLM: <= 1.2x.
- **evaluate prompts/s**, vLLM / HF: ``qwenft.clinical.evaluate.evaluate`` over the same first ``prompts`` test
  records with ``decomposition`` and BM25 (k=2), ``new_tokens`` per text; HF answers one prompt at a time, vLLM
  keeps ``generation.vllm.parallel`` (8) in flight. Target >= 5x.
- **start-up**: the vLLM server's load time; with ``--cli`` also ``qwenft answer`` end to end per engine (one
  prompt, process start to exit), which is what a one-shot answer costs.
- **training-time clinical eval** (``ClinicalEval``, 2 prompts): HF on the model in memory vs vLLM (merged
  weights written to a temp folder + a server start + the answers) -- why that callback defaults to hf.

Writes a section between markers in ``experiments/bench/RESULTS.md`` (command, machine, date) and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from experiments.bench.latency import median_seconds, prompt_set
from qwenft.clinical.engines import HFEngine, open_engine, open_engine_for_model
from qwenft.clinical.evaluate import evaluate
from qwenft.clinical.generate import generate_batch
from qwenft.clinical.generation_settings import GenerationSettings
from qwenft.clinical.stages import answer
from qwenft.clinical.strategies import Decomposition
from qwenft.config import compose
from qwenft.data.datamodule import DEMO_DIR
from qwenft.data.io import load_records
from qwenft.hardware import native_bf16
from qwenft.retrieval.bm25 import BM25Retriever
from qwenft.train.runinfo import cpu_model

START, END = "<!-- engines:start -->", "<!-- engines:end -->"


def hf_latency(engine: HFEngine, prompts: list[str], n: int, bf16: bool, repeats: int) -> dict:
    model, tok = engine.model, engine.tokenizer
    model.generation_config.min_new_tokens = n  # fixed-length texts (as experiments/bench/latency.py)

    def gen(ps: list[str]) -> list[str]:
        return generate_batch(model, tok, ps, engine.instruct, max_new_tokens=n, bf16=bf16)

    try:
        return {"single_s": median_seconds(lambda: gen(prompts[1:2]), repeats),
                "batched_s": median_seconds(lambda: gen(prompts), repeats)}
    finally:
        model.generation_config.min_new_tokens = None


def vllm_latency(engine, prompts: list[str], n: int, repeats: int) -> dict:  # noqa: ANN001
    settings = GenerationSettings(max_new_tokens=n)

    def gen(ps: list[str]) -> None:
        body = {**engine.request(ps, settings), "min_tokens": n, "ignore_eos": True}
        r = engine.client.post("/v1/completions", json=body)
        r.raise_for_status()
        assert all(len(c["token_ids"]) == n for c in r.json()["choices"])

    return {"single_s": median_seconds(lambda: gen(prompts[1:2]), repeats),
            "batched_s": median_seconds(lambda: gen(prompts), repeats)}


def evaluate_rate(engine, records: list[dict], retriever, gen: dict) -> dict:  # noqa: ANN001
    t0 = time.perf_counter()
    result = evaluate(records, [Decomposition()], engine, retriever, 2, ["per_question"], gen, reference=None,
                      progress=False, n_resamples=10)
    wall = time.perf_counter() - t0
    texts = [[p["response"]["summary"], *(a["answer"] for a in p["response"]["answers"])] for p in result.predictions]
    return {"seconds": wall, "prompts": len(records), "prompts_per_s": len(records) / wall, "texts": texts}


def cli_answer(engine: str, model: str, n: int, bf16: bool) -> float:
    """``qwenft answer`` end to end, one prompt: what a one-shot answer costs with this engine."""
    rec = load_records(DEMO_DIR / "test.jsonl").records[0]
    prompt = rec["scenario"] + "\n" + "\n".join(f"{i}. {q}" for i, q in enumerate(rec["questions"], 1))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qwenft.cli", "answer", f"model={model}", f"generation.engine={engine}",
                    "retrieval=none", f"generation.max_new_tokens={n}", f"generation.bf16={str(bf16).lower()}",
                    "output=json"], input=prompt, text=True,
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def callback_cost(engine_hf: HFEngine, records: list[dict], gens: dict) -> dict:
    """``ClinicalEval``'s work at one validation, 2 prompts, without retrieval: hf vs vllm on the same weights."""
    out = {}
    for name in ("hf", "vllm"):
        t0 = time.perf_counter()
        with open_engine_for_model({**gens[name], "engine": name}, engine_hf.model, engine_hf.tokenizer,
                                   engine_hf.instruct) as engine:
            ready = time.perf_counter() - t0
            for rec in records:
                answer(load_parsed(rec), Decomposition(), engine.model, engine.tokenizer, engine.instruct, None,
                       gen=gens[name])
        out[name] = {"seconds": time.perf_counter() - t0, "ready_s": ready}
    return out


def load_parsed(rec: dict):  # noqa: ANN201
    from qwenft.clinical.parse import Parsed

    return Parsed(rec["scenario"], rec["questions"])


def rows(r: dict) -> list[str]:
    n, dts = r["new_tokens"], r["dtypes"]
    out = []
    for eng in ("hf", "vllm"):
        lat = r["latency"][eng]
        ratio = lat["batched_s"] / lat["single_s"]
        out.append(f"| {eng}: clinical latency, 4 questions + summary batched / one answer alone | "
                   f"{lat['batched_s']:.2f} / {lat['single_s']:.2f} s = **{ratio:.2f}×** | "
                   f"{'≤ 1.2×' if eng == 'vllm' else '≤ 1.5×'} | {n} new tokens per text, greedy, {dts[eng]} |")
    hf_b, v_b = r["latency"]["hf"]["batched_s"], r["latency"]["vllm"]["batched_s"]
    out.append(f"| batched answer, hf / vllm | {hf_b:.2f} / {v_b:.2f} s = {hf_b / v_b:.2f}× | | the same 5 "
               "prompts, same token ids |")
    ev_h, ev_v = r["evaluate"]["hf"], r["evaluate"]["vllm"]
    out.append(f"| `evaluate` prompts/s, vllm / hf | {ev_v['prompts_per_s']:.3f} / {ev_h['prompts_per_s']:.3f} = "
               f"**{ev_v['prompts_per_s'] / ev_h['prompts_per_s']:.2f}×** | ≥ 5× | the same {ev_h['prompts']} "
               f"test prompts, decomposition, BM25 k=2, {n} new tokens per text; vllm {r['parallel']} in flight; "
               f"identical texts: {r['evaluate']['same_texts']} |")
    out.append(f"| vLLM server start-up (model load) | {r['vllm_load_s']:.0f} s | | once per process |")
    if r.get("cli"):
        out.append(f"| `qwenft answer` one prompt end to end, hf / vllm | {r['cli']['hf']:.0f} / "
                   f"{r['cli']['vllm']:.0f} s | | process start to exit, {n} new tokens per text |")
    if r.get("callback"):
        cb = r["callback"]
        out.append(f"| training-time clinical eval, 2 prompts: vllm (export + start + answers) / hf | "
                   f"{cb['vllm']['seconds']:.0f} / {cb['hf']['seconds']:.0f} s | | vllm ready after "
                   f"{cb['vllm']['ready_s']:.0f} s: the callback keeps hf |")
    return out


def write_section(text: str, path: Path | None = None) -> None:
    """Replace (or append) this bench's section of RESULTS.md, leaving ``run.py``'s table alone."""
    path = path or Path(__file__).with_name("RESULTS.md")
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{START}\n{text.rstrip()}\n{END}\n"
    if START in old and END in old:
        new = old[: old.index(START)] + block + old[old.index(END) + len(END):].lstrip("\n")
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="offline")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cli", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--callback", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--hf-bf16", choices=("auto", "true", "false"), default="auto",
                   help="HF's precision (auto: bf16 where the CPU has native bf16, as shipped)")
    p.add_argument("--vllm-bf16", choices=("auto", "true", "false"), default="auto")
    p.add_argument("--out-json", default=None)
    args = p.parse_args()
    n = args.new_tokens
    pick = {"auto": native_bf16(), "true": True, "false": False}
    bf16 = {"hf": pick[args.hf_bf16], "vllm": pick[args.vllm_bf16]}
    cfg = compose("evaluate", [f"model={args.model}", f"generation.max_new_tokens={n}"])
    gen = OmegaConf.to_container(cfg.generation, resolve=True)
    gens = {e: {**gen, "bf16": b} for e, b in bf16.items()}
    prompts, _ = prompt_set()
    records = load_records(DEMO_DIR / "test.jsonl").records[: args.prompts]
    retriever = BM25Retriever(DEMO_DIR / "kb.jsonl", cache_dir=tempfile.mkdtemp(prefix="bench-bm25-"))
    dtypes = {e: "bf16" if b else "fp32" for e, b in bf16.items()}
    r: dict = {"model": args.model, "new_tokens": n, "dtypes": dtypes, "latency": {},
               "evaluate": {}, "parallel": int(gen["vllm"]["parallel"])}

    hf = open_engine({**gens["hf"], "engine": "hf"}, cfg.model)
    r["latency"]["hf"] = hf_latency(hf, prompts, n, bf16["hf"], args.repeats)
    r["evaluate"]["hf"] = evaluate_rate(hf, records, retriever, gens["hf"])
    if args.callback:
        r["callback"] = callback_cost(hf, records[:2], gens)
    hf.close()
    del hf

    t0 = time.perf_counter()
    with open_engine({**gens["vllm"], "engine": "vllm"}, cfg.model) as vllm:
        r["vllm_load_s"] = time.perf_counter() - t0
        r["latency"]["vllm"] = vllm_latency(vllm, prompts, n, args.repeats)
        r["evaluate"]["vllm"] = evaluate_rate(vllm, records, retriever, gens["vllm"])
    a, b = r["evaluate"]["hf"]["texts"], r["evaluate"]["vllm"]["texts"]
    same = sum(x == y for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))
    r["evaluate"]["same_texts"] = f"{same}/{sum(map(len, a))}"
    if args.cli:
        r["cli"] = {e: cli_answer(e, args.model, n, bf16[e]) for e in ("hf", "vllm")}

    table = "| measure | result | target | note |\n|---|---|---|---|\n" + "\n".join(rows(r)) + "\n"
    cpu = cpu_model()
    stamp = (f"{datetime.date.today()} on {cpu} ({platform.machine()}, {os.cpu_count()} cores, "
             f"{torch.get_num_threads()} torch threads), model={args.model}, hf in {dtypes['hf']}, vllm in "
             f"{dtypes['vllm']}; command: "
             f"`python -m experiments.bench.engines {' '.join(sys.argv[1:])}`")
    text = f"## Engines: HF vs vLLM\n\n{stamp}\n\n{table}"
    print(text)
    write_section(text)
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
