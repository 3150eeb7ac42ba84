"""New-word benchmark: held-out new-word NLL after continued pretraining on raw text, arm by arm.

Invented words (drug, disease and sign names built from syllables with ``--data-seed``) appear in generated
raw-text documents; the held-out documents use other sentence templates than the training ones, so the score is
about the words, not the sentences. Every arm trains on the same ``train.txt`` for the same steps, batch, length
and learning rate, and is scored on the same ``heldout.txt`` by ``qwenft.metrics.newword`` (NLL per word
occurrence: the sum over the tokens that spell it, so arms with different tokenizers compare):

* ``none`` -- no extension: the words stay Qwen's pieces (qwenft pipeline, ``tokenizer=none``).
* ``usual`` -- the usual recipe: ``tokenizer.add_tokens(words)``, ``resize_token_embeddings(len(tokenizer))``
  (transformers' mean init), LoRA r=8 on q_proj/v_proj through PEFT, new rows frozen, HF ``Trainer`` with
  ``DataCollatorForLanguageModeling`` on the same documents (each + ``<|endoftext|>``, truncated to the length).
* ``qwenft`` -- qwenft's default: ``data=text`` (windows, packed), extension with kept/added forms,
  ``mean_subword`` rows that train (``trainable_rows=new_rows``), LoRA on every projection.
* ablations: ``qwenft_qv`` (qwenft with the usual recipe's adapter, LoRA r=8 q/v), ``qwenft_frozen_rows``,
  ``qwenft_init_default`` (mean of all rows, as resize does), ``qwenft_no_rows_lr`` (rows at the body's lr),
  ``qwenft_rows_lr_1e-4`` and ``qwenft_init_distill_rows_lr_1e-4`` (rows at 1e-4 instead of 1e-3).
* ``qwenft_init_gloss``: rows from a gloss of the word's kind ("a medicine", "a disease", "a clinical sign";
  ``init=description``). Three more levers were measured at commit 0e17cb5 and removed because they did not help
  (rows-only warm-up, a constant rows lr, output rows fitted to the pieces' probability in context): see
  ``experiments/results/newword_bench/README.md``.

    python -m experiments.newword_bench [--model offline] [--steps 40] [--batch 8] [--seeds 0 1 2] \
        [--arms none usual qwenft ...] [--out experiments/results/newword_bench]
    python -m experiments.newword_bench --combine DIR1 DIR2 --out DIR   # one table from runs of more seeds

Writes ``results.json`` (every arm x seed) and ``RESULTS.md`` (mean ± sd per arm, ratio to ``usual``, command,
machine, date) under ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from experiments.stats import mean_ci

SYLLABLES = ["zor", "bix", "quan", "tel", "vry", "mox", "daz", "plin", "xer", "ulf", "kav", "nep", "tor", "gli"]
SUFFIX = {"drug": ["amab", "ocin", "atril", "ivane"], "disease": ["itis", "osis", "emia"], "sign": ["ax", "ule"]}
TRAIN_TEMPLATES = {
    "drug": ["The patient was started on {w} twice daily.", "{W} is given for {d}.",
             "After a week of {w}, the {s} resolved.", "Doses of {w} are reduced in kidney failure.",
             "Side effects of {w} include nausea."],
    "disease": ["{W} often presents with {s}.", "The diagnosis of {w} was confirmed by biopsy.",
                "Patients with {w} respond to {g}.", "Untreated {w} can spread to the lungs."],
    "sign": ["On examination there was marked {w}.", "{W} is a classic sign of {d}.",
             "The {w} faded after treatment."],
}
HELDOUT_TEMPLATES = {  # sentences never seen in training: only the words carry over
    "drug": ["Her doctor prescribed {w} for {d}.", "Stop {w} if a rash appears."],
    "disease": ["A family history of {w} raises the risk.", "In {w}, the {s} is usually the first finding."],
    "sign": ["Nurses noted {w} on the second day.", "Without {w}, {d} is unlikely."],
}
ARMS = ("none", "usual", "qwenft", "qwenft_qv", "qwenft_frozen_rows", "qwenft_init_default", "qwenft_no_rows_lr",
        "qwenft_init_gloss", "qwenft_init_distill", "qwenft_init_adaptivocab", "qwenft_init_mean_subword",
        "qwenft_init_distill_rows_lr_1e-4", "qwenft_rows_lr_1e-4", "qwenft_init_distill_frozen_rows",
        "qwenft_init_distill_output_rows")
GLOSS = {"drug": "a medicine", "disease": "a disease", "sign": "a clinical sign"}  # what the kind honestly tells
LEARNING_RATE, MAX_LENGTH = 3e-4, 128


# --------------------------------------------------------------------------------------------------- data


def invented_words(seed: int, per_kind: int = 4) -> dict[str, list[str]]:
    """Words Qwen has never seen, by kind, reproducible from ``seed`` (no two alike)."""
    rng = random.Random(seed)
    words: dict[str, list[str]] = {}
    seen: set[str] = set()
    for kind, ends in SUFFIX.items():
        words[kind] = []
        while len(words[kind]) < per_kind:
            w = "".join(rng.sample(SYLLABLES, 2)) + rng.choice(ends)
            if w not in seen:
                seen.add(w)
                words[kind].append(w)
    return words


def documents(words: dict[str, list[str]], templates: dict[str, list[str]], n: int, seed: int) -> list[str]:
    """``n`` raw-text documents of 3-6 sentences, each sentence from ``templates`` with random words."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sentences = []
        for _ in range(rng.randint(3, 6)):
            kind = rng.choice(list(templates))
            w = rng.choice(words[kind])
            sentences.append(rng.choice(templates[kind]).format(
                w=w, W=w.capitalize(), d=rng.choice(words["disease"]), s=rng.choice(words["sign"]),
                g=rng.choice(words["drug"])))
        docs.append(" ".join(sentences))
    return docs


def write_data(out: Path, data_seed: int, n_train: int, n_heldout: int) -> dict:
    words = invented_words(data_seed)
    flat = [w for ws in words.values() for w in ws]
    out.mkdir(parents=True, exist_ok=True)
    (out / "words.txt").write_text("".join(w + "\n" for w in flat), encoding="utf-8")
    (out / "words_gloss.txt").write_text("".join(f"{w}\t{GLOSS[k]}\n" for k, ws in words.items() for w in ws),
                                         encoding="utf-8")
    train = documents(words, TRAIN_TEMPLATES, n_train, data_seed)
    heldout = documents(words, HELDOUT_TEMPLATES, n_heldout, data_seed + 1)
    (out / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    (out / "heldout.txt").write_text("\n".join(heldout) + "\n", encoding="utf-8")
    return {"words": flat, "train": train, "heldout": heldout, "dir": out}


# --------------------------------------------------------------------------------------------------- arms


def qwenft_overrides(arm: str, data_dir: Path) -> list[str]:
    from experiments.bench.baseline_recipe import LORA

    qv = [f"peft.target_modules=[{','.join(LORA['target_modules'])}]", f"peft.r={LORA['r']}",
          f"peft.alpha={LORA['lora_alpha']}"]
    return {"none": ["tokenizer=none"], "qwenft": [], "qwenft_qv": qv,
            "qwenft_frozen_rows": ["tokenizer.trainable_rows=frozen"],
            "qwenft_init_default": ["tokenizer.init=default"],
            "qwenft_no_rows_lr": [f"tokenizer.rows_lr={LEARNING_RATE}"],
            "qwenft_init_gloss": ["tokenizer.init=description", f"tokenizer.words_file={data_dir / 'words_gloss.txt'}"],
            "qwenft_init_distill": ["tokenizer.init=distill"],
            "qwenft_init_adaptivocab": ["tokenizer.init=adaptivocab"],
            "qwenft_init_mean_subword": ["tokenizer.init=mean_subword"],
            # rows at 1e-4: at 1e-3 training moved the distilled rows away (newword_real, stop 32)
            "qwenft_init_distill_rows_lr_1e-4": ["tokenizer.init=distill", "tokenizer.rows_lr=1e-4"],
            "qwenft_rows_lr_1e-4": ["tokenizer.rows_lr=1e-4"],
            # the distilled rows kept as they are: best on real words (newword_real, 2026-12-03)
            "qwenft_init_distill_frozen_rows": ["tokenizer.init=distill", "tokenizer.trainable_rows=frozen"],
            # the distilled input rows kept, the head's new rows trained (untied heads): for both kinds of word?
            "qwenft_init_distill_output_rows": ["tokenizer.init=distill", "tokenizer.trainable_rows=output_rows"],
            }[arm]


def run_qwenft(arm: str, model: str, data: dict, steps: int, batch: int, seed: int, run_dir: str):
    """qwenft's own pipeline on the raw text; returns (model, tokenizer, seconds)."""
    from qwenft.config import compose
    from qwenft.train.loop import train_run

    d = data["dir"]
    cfg = compose("train", [
        f"model={model}", "data=text", f"data.train_path={d / 'train.txt'}", f"data.batch_size={batch}",
        f"data.max_length={MAX_LENGTH}", f"tokenizer.words_file={d / 'words.txt'}",
        f"eval_words_file={d / 'words.txt'}",
        "logger=none", "callbacks=none", f"trainer.max_steps={steps}", "trainer.precision=32-true",
        "validate_before=false", f"optim.lr={LEARNING_RATE}", "export.enabled=false", f"seed={seed}",
        f"paths.output_dir={run_dir}", *qwenft_overrides(arm, d)])
    start = time.perf_counter()
    trained = train_run(cfg, run_dir=run_dir)
    return trained.module.model, trained.tokenizer, time.perf_counter() - start


def run_usual(model: str, data: dict, steps: int, batch: int, seed: int, run_dir: str):
    """The usual recipe on the same documents (same model source, same steps/batch/length/lr)."""
    import torch
    from datasets import Dataset
    from hydra.utils import instantiate
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed

    from experiments.bench.baseline_recipe import LORA
    from qwenft.config import compose

    set_seed(seed)
    loaded = instantiate(compose("train", [f"model={model}"]).model)
    tokenizer = copy.deepcopy(loaded.tokenizer)
    tokenizer.add_tokens(data["words"])
    hf_model = loaded.model.float()
    hf_model.resize_token_embeddings(len(tokenizer))
    hf_model.config.use_cache = False
    eos = "<|endoftext|>"
    ds = Dataset.from_list([{"text": t + eos} for t in data["train"]]).map(
        lambda ex: tokenizer(ex["text"], truncation=True, max_length=MAX_LENGTH), remove_columns=["text"])
    peft_model = get_peft_model(hf_model, LoraConfig(**LORA, task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=run_dir, max_steps=steps, per_device_train_batch_size=batch,
                             learning_rate=LEARNING_RATE, use_cpu=not torch.cuda.is_available(), report_to=[],
                             save_strategy="no", logging_steps=max(steps, 1), seed=seed, lr_scheduler_type="cosine",
                             warmup_steps=max(1, steps // 10), dataloader_num_workers=0)
    start = time.perf_counter()
    Trainer(model=peft_model, args=args, train_dataset=ds,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False)).train()
    return peft_model, tokenizer, time.perf_counter() - start


def score(model, tokenizer, data: dict) -> dict:  # noqa: ANN001
    from qwenft.metrics.newword import new_word_nll

    stats = new_word_nll(model, tokenizer, data["heldout"], data["words"], max_length=MAX_LENGTH * 4)
    return {"new_word_nll": stats.new_word_nll, "bits_per_byte": stats.bits_per_byte,
            "occurrences": stats.occurrences, "first_new_word_nll": stats.first_new_word_nll,
            "first_occurrences": stats.first_occurrences}


def run_arm(arm: str, model: str, data: dict, steps: int, batch: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        if arm == "usual":
            trained, tok, seconds = run_usual(model, data, steps, batch, seed, run_dir)
        else:
            trained, tok, seconds = run_qwenft(arm, model, data, steps, batch, seed, run_dir)
        return {"arm": arm, "seed": seed, "seconds": seconds, **score(trained, tok, data)}


# ---------------------------------------------------------------------------------------------- reporting


def summarise(rows: list[dict]) -> dict[str, dict]:
    """Per arm: mean [95 % CI] over seeds of the NLL at every occurrence and at first occurrences only (a word's
    first occurrence in a held-out document cannot be copied from earlier in it), bits per byte, and the paired
    (same seed) difference to qwenft's default. Rows from before first-occurrence scoring lack ``first_*``."""
    out: dict[str, dict] = {}
    for arm in dict.fromkeys(r["arm"] for r in rows):
        rs = [r for r in rows if r["arm"] == arm]
        first = [r["first_new_word_nll"] for r in rs if "first_new_word_nll" in r]
        out[arm] = {"seeds": len(rs), "seconds": statistics.fmean(r["seconds"] for r in rs),
                    "new_word_nll": mean_ci([r["new_word_nll"] for r in rs]),
                    "first_new_word_nll": mean_ci(first) if first else None,
                    "bits_per_byte": mean_ci([r["bits_per_byte"] for r in rs])}
    for key in ("new_word_nll", "first_new_word_nll"):
        usual = (out.get("usual") or {}).get(key)
        for s in out.values():
            s[f"{key}_vs_usual"] = s[key][0] / usual[0] if usual and s[key] else math.nan
    # paired by seed against qwenft's default: the seeds share data order and LoRA init, so the difference is
    # what the arm changes, with less of the seed-to-seed spread than two means
    ref = {r["seed"]: r for r in rows if r["arm"] == "qwenft"}
    for arm, s in out.items():
        pairs = [r for r in rows if r["arm"] == arm and r["seed"] in ref]
        s["paired_seeds"] = len(pairs)
        for key in ("new_word_nll", "first_new_word_nll", "bits_per_byte"):
            d = [r[key] - ref[r["seed"]][key] for r in pairs if key in r and key in ref[r["seed"]]]
            s[f"d_{key}"] = mean_ci(d) if d else None
    return out


def markdown(summary: dict[str, dict], stamp: dict) -> str:
    commands = stamp.get("commands", [stamp["command"]])
    first_n = stamp.get("first_occurrences")
    lines = [f"# New-word benchmark ({stamp['model']}, {stamp['steps']} steps x batch {stamp['batch']}, "
             f"seeds {stamp['seeds']})", "",
             " + ".join(f"`{c}`" for c in commands) + f" -- {stamp['machine']}, {stamp['date']}. Held-out new-word "
             f"NLL in nats per occurrence, lower is better: at the first occurrence of each word in each document "
             f"({first_n or '?'} occurrences: nothing earlier in the text to copy) and at every occurrence "
             f"({stamp['occurrences']}), of {len(stamp['words'])} invented words in {stamp['heldout_docs']} "
             "documents with unseen templates. Mean [95 % CI] over seeds (t interval); Δ: paired by seed against "
             "`qwenft`. Wall time: the training call only.", "",
             "| arm | n seeds | first-occurrence NLL | × usual | every-occurrence NLL | × usual | bits/byte | "
             "train s | Δ first-occurrence NLL vs qwenft | Δ bits/byte vs qwenft |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(v: tuple | None, signed: bool = False) -> str:
        if v is None:
            return "n/a"
        f = "{:+.3f}" if signed else "{:.3f}"
        return f.format(v[0]) if math.isnan(v[1]) else f"{f.format(v[0])} [{f.format(v[1])}, {f.format(v[2])}]"

    for arm, s in summary.items():
        paired = arm != "qwenft" and s.get("paired_seeds")
        lines.append(f"| {arm} | {s['seeds']} | {cell(s['first_new_word_nll'])} | "
                     f"{s['first_new_word_nll_vs_usual']:.2f} | {cell(s['new_word_nll'])} | "
                     f"{s['new_word_nll_vs_usual']:.2f} | {cell(s['bits_per_byte'])} | {s['seconds']:.0f} | "
                     f"{cell(s['d_first_new_word_nll'], True) if paired else ''} | "
                     f"{cell(s['d_bits_per_byte'], True) if paired else ''} |")
    return "\n".join(lines) + "\n"


def combine(dirs: list[str], out: Path) -> dict:
    """One table from several runs of this script on the same data and settings (e.g. more seeds added later):
    refuses runs whose model, steps, batch, words or held-out occurrences differ, or that repeat an arm x seed."""
    runs = [json.loads((Path(d) / "results.json").read_text()) for d in dirs]
    keys = ("model", "steps", "batch", "words", "heldout_docs", "occurrences")
    first = runs[0]["stamp"]
    for run, d in zip(runs, dirs, strict=True):
        if any(run["stamp"][k] != first[k] for k in keys):
            raise SystemExit(f"{d}: not the same benchmark as {dirs[0]} (compare {', '.join(keys)})")
    rows = [r for run in runs for r in run["rows"]]
    pairs = [(r["arm"], r["seed"]) for r in rows]
    if len(set(pairs)) != len(pairs):
        raise SystemExit(f"an arm x seed appears twice in {dirs}")
    stamp = {**first, "commands": [run["stamp"]["command"] for run in runs],
             "seeds": sorted({r["seed"] for r in rows}), "date": max(run["stamp"]["date"] for run in runs),
             "combined_from": list(dirs)}
    summary = summarise(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"stamp": stamp, "rows": rows, "summary": summary}, indent=2))
    (out / "RESULTS.md").write_text(markdown(summary, stamp))
    print(markdown(summary, stamp))
    return {"stamp": stamp, "rows": rows, "summary": summary}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="offline")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--train-docs", type=int, default=400)
    ap.add_argument("--heldout-docs", type=int, default=80)
    ap.add_argument("--out", default="experiments/results/newword_bench")
    ap.add_argument("--combine", nargs="+", metavar="DIR",
                    help="run nothing: one table from the results.json of earlier runs (same data and settings)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.combine:
        return combine(args.combine, out)
    data = write_data(out / "data", args.data_seed, args.train_docs, args.heldout_docs)
    from qwenft.train.runinfo import cpu_model

    stamp = {"command": "python -m experiments.newword_bench " + " ".join(argv if argv is not None else sys.argv[1:]),
             "machine": f"{cpu_model()} ({platform.machine()})", "date": datetime.date.today().isoformat(),
             "model": args.model, "steps": args.steps, "batch": args.batch, "seeds": args.seeds,
             "words": data["words"], "heldout_docs": len(data["heldout"])}
    rows: list[dict] = []
    for seed in args.seeds:
        for arm in args.arms:
            rows.append(run_arm(arm, args.model, data, args.steps, args.batch, seed))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            stamp |= {"occurrences": rows[0]["occurrences"], "first_occurrences": rows[0]["first_occurrences"]}
            summary = summarise(rows)  # written after every arm: an interrupted run keeps what it finished
            (out / "results.json").write_text(json.dumps({"stamp": stamp, "rows": rows, "summary": summary}, indent=2))
            (out / "RESULTS.md").write_text(markdown(summary, stamp))
    print(markdown(summary, stamp))
    return {"stamp": stamp, "rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
