"""Real words, real text: does a new token behave like Qwen's own pieces, at step 0 and after training?

MedQuAD documents are split by id into training documents (the text the words are discovered in, the rows are
distilled on and the arms train on) and held-out documents (scored only). Two word sets come from the training
answers through ``qwenft.tokenizer.discover``: ``discover`` (the 100 words a user gets: ranked by occurrences x
pieces saved) and ``long`` (the 100 best-ranked words Qwen writes in 3 or more pieces). Held-out texts come in two
forms, each built from single held-out sentences that hold exactly one occurrence of one word, so no occurrence
can be copied from earlier in the same text:

* ``plain`` -- the sentence alone;
* ``qa`` -- ``A patient asks about W. What is W? <sentence>``: the word is read twice before it is written;
* ``asked`` -- a held-out record's own question, when it names W, then one sentence of its answer that holds W
  once: real questions in the form the training documents take (question + answer), so the words are carried
  from a real question rather than from one fixed template whose own tokens training moves from seed to seed.

Arms (same model load, same words): ``pieces`` (no extension), ``mean_subword``, ``adaptivocab``, ``distill``.
Scores: new-word NLL per occurrence (nats, summed over the tokens that spell it), bits per byte of the whole text,
tokens per text. ``--steps N`` also trains each arm N steps of batch ``--batch`` on the training documents as raw
text (question + answer, so answers repeat the question's words) with qwenft's pipeline and scores again;
``--seeds`` repeats that part. A per-word table says which words pay.

    python -m experiments.newword_real [--words discover long] [--arms ...] [--steps 40 --seeds 0 1 2] \
        [--out experiments/results/newword_real]
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import json
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from experiments.stats import fmt_ci

MEDQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "medquad.jsonl.gz"
ARMS = ("pieces", "mean_subword", "adaptivocab", "distill")
FORMS = ("plain", "qa", "asked")
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def load_medquad(path: Path = MEDQUAD) -> tuple[list[dict], list[dict]]:
    """Records split by a hash of their id: 1 in 10 held out (documents, not sentences, are held out)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    held = [r for r in rows if int(hashlib.sha256(r["id"].encode()).hexdigest(), 16) % 10 == 0]
    train = [r for r in rows if int(hashlib.sha256(r["id"].encode()).hexdigest(), 16) % 10 != 0]
    return train, held


def word_sets(train: list[dict], tokenizer, n: int = 100) -> dict[str, list[str]]:  # noqa: ANN001
    from qwenft.tokenizer.discover import discover_words

    answers = [r["answer"] for r in train[:4000]]
    ranked = discover_words(answers, tokenizer, min_count=3, max_words=100000)
    return {"discover": [c.word for c in ranked[:n]], "long": [c.word for c in ranked if c.pieces >= 3][:n]}


def heldout_texts(held: list[dict], words: list[str], per_word: int = 3, limit: int = 300, seed: int = 0,
                  train_text: str = "") -> dict[str, list[str]]:
    """Single sentences with exactly one occurrence of one word (at most ``per_word`` per word), and their QA form.
    MedQuAD repeats answers across records: a sentence that also occurs in ``train_text`` (the training
    documents, which distillation and training read) is left out, so none is seen before it is scored."""
    from qwenft.metrics.newword import word_pattern

    pattern = word_pattern(words)
    rng = random.Random(seed)
    sentences = [s.strip() for r in held for s in SENTENCE.split(r["answer"]) if 40 <= len(s.strip()) <= 300]
    rng.shuffle(sentences)
    per: dict[str, int] = {}
    plain, qa = [], []
    for s in sentences:
        hits = pattern.findall(s)
        if len(hits) != 1 or per.get(hits[0], 0) >= per_word or s in train_text:
            continue
        per[hits[0]] = per.get(hits[0], 0) + 1
        plain.append(s)
        qa.append(f"A patient asks about {hits[0]}. What is {hits[0]}? {s}")
        if len(plain) >= limit:
            break
    return {"plain": plain, "qa": qa, "asked": asked_texts(held, pattern, train_text, per_word=5)}


def asked_texts(held: list[dict], pattern: re.Pattern[str], train_text: str, per_word: int = 5) -> list[str]:
    """``<question> <sentence>``: the record's question names the word, the sentence (from the same record's
    answer, not in the training text) holds it exactly once; at most ``per_word`` texts per word."""
    seen = " ".join(train_text.split())
    per: dict[str, int] = {}
    out = []
    for r in held:
        question = " ".join(r["question"].split())
        named = set(pattern.findall(question))
        for s in SENTENCE.split(r["answer"]) if named else []:
            s = " ".join(s.split())
            hits = pattern.findall(s) if 40 <= len(s) <= 300 else []
            if len(hits) == 1 and hits[0] in named and per.get(hits[0], 0) < per_word and s not in seen:
                per[hits[0]] = per.get(hits[0], 0) + 1
                out.append(f"{question} {s}")
    return out


def training_docs(train: list[dict], words: list[str], n: int = 1500, seed: int = 0) -> list[str]:
    """Training documents that use the words: question + answer (answers repeat the question's words),
    one per line as ``data=text`` reads them."""
    from qwenft.metrics.newword import word_pattern

    pattern = word_pattern(words)
    rng = random.Random(seed)
    docs = [f"{r['question']} {r['answer']}".replace("\n", " ") for r in train if pattern.search(r["answer"])]
    rng.shuffle(docs)
    return docs[:n]


def score(model, tokenizer, texts: dict[str, list[str]], words: list[str]) -> dict:  # noqa: ANN001
    from qwenft.metrics.newword import new_word_nll

    out = {}
    for form, ts in texts.items():
        stats = new_word_nll(model, tokenizer, ts, words, max_length=512, batch_size=8)
        tokens = sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in ts)
        out[form] = {"new_word_nll": stats.new_word_nll, "bits_per_byte": stats.bits_per_byte,
                     "occurrences": stats.occurrences, "tokens_per_text": tokens / len(ts),
                     "per_word": {w: v[0] / v[1] for w, v in stats.per_word.items()}}
    return out


def step0(arm: str, model_name: str, words: list[str], corpus: list[str], texts: dict, seed: int) -> dict:
    """Extend (or not) and score before any training; ``corpus``: the documents the rows distill on -- the same
    training documents the trained arms read, so a trained arm starts from exactly these rows (and reads them
    from ``qwenft.model.distill_cache`` instead of distilling again)."""
    from hydra.utils import instantiate

    from qwenft.config import compose
    from qwenft.model.distill import DistillSettings
    from qwenft.tokenizer.extend import extend_model

    loaded = instantiate(compose("train", [f"model={model_name}"]).model)
    start = time.perf_counter()
    if arm == "pieces":
        tok, summary = loaded.tokenizer, None
    else:
        ext = extend_model(loaded.model, loaded.tokenizer, words, init=arm, texts=corpus, seed=seed,
                           distill=DistillSettings(seed=seed))
        tok, summary = ext.tokenizer, ext.distill
    seconds = time.perf_counter() - start
    return {"arm": arm, "seed": seed, "init_seconds": seconds, "distill": summary,
            **score(loaded.model, tok, texts, words)}


def trained(arm: str, model_name: str, words: list[str], data_dir: Path, texts: dict, steps: int, batch: int,
            seed: int, max_length: int = 256, overrides: Sequence[str] = ()) -> dict:
    from qwenft.config import compose
    from qwenft.train.loop import train_run

    over = ["tokenizer=none", f"eval_words_file={data_dir / 'words.txt'}"] if arm == "pieces" else \
        [f"tokenizer.words_file={data_dir / 'words.txt'}", f"tokenizer.init={arm}", *overrides]
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = compose("train", [
            f"model={model_name}", "data=text", f"data.train_path={data_dir / 'train.txt'}", f"data.batch_size={batch}",
            f"data.max_length={max_length}", "logger=none", "callbacks=none", f"trainer.max_steps={steps}",
            "validate_before=false", "optim.lr=3e-4", "export.enabled=false", f"seed={seed}",
            f"paths.output_dir={run_dir}", *over])
        start = time.perf_counter()
        trained = train_run(cfg, run_dir=run_dir)
        seconds = time.perf_counter() - start
        return {"arm": arm, "seed": seed, "steps": steps, "train_seconds": seconds,
                **score(trained.module.model, trained.tokenizer, texts, words)}


def table(rows: list[dict], title: str) -> list[str]:
    """Mean [95 % CI] over seeds; the deltas are paired by seed against the ``pieces`` arm."""
    lines = [f"### {title}", "", "| words | form | arm | n seeds | new-word NLL | Δ vs pieces | bits/byte | "
             "Δ bits/byte vs pieces (%) | tokens/text |", "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["words"], f) for r in rows for f in FORMS if f in r})
    for wset, form in keys:
        ref = {r["seed"]: r[form] for r in rows if r["words"] == wset and r["arm"] == "pieces" and form in r}
        if ref and all(r["steps"] == 0 for r in rows):  # untrained pieces do not depend on the seed
            ref = {r["seed"]: next(iter(ref.values())) for r in rows} | ref
        for arm in dict.fromkeys(r["arm"] for r in rows):
            rs = [r for r in rows if r["words"] == wset and r["arm"] == arm and form in r]
            if not rs:
                continue
            nll = [r[form]["new_word_nll"] for r in rs]
            bpb = [r[form]["bits_per_byte"] for r in rs]
            d = [r[form]["new_word_nll"] - ref[r["seed"]]["new_word_nll"] for r in rs if r["seed"] in ref]
            db = [100 * (r[form]["bits_per_byte"] / ref[r["seed"]]["bits_per_byte"] - 1)
                  for r in rs if r["seed"] in ref]
            lines.append(f"| {wset} | {form} | {arm} | {len(rs)} | {fmt_ci(nll)} | "
                         f"{fmt_ci(d, signed=True) if d and arm != 'pieces' else ''} | {fmt_ci(bpb)} | "
                         f"{fmt_ci(db, signed=True) if db and arm != 'pieces' else ''} | "
                         f"{statistics.fmean(r[form]['tokens_per_text'] for r in rs):.1f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="offline")
    ap.add_argument("--words", nargs="+", default=["discover", "long"], choices=["discover", "long"])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--steps", type=int, default=0, help="0: step 0 only")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--max-length", type=int, default=256, help="training window (tokens); 2-core CPUs: 64")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="overrides",
                    help="Hydra overrides for the extended arms' training, e.g. tokenizer.rows_lr=1e-4; "
                         "their rows are labelled arm[KEY=VALUE]")
    ap.add_argument("--out", default="experiments/results/newword_real")
    ap.add_argument("--table-only", action="store_true", help="run nothing: RESULTS.md from --out's results.json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from qwenft.model.qwen_tokenizer import load_tokenizer

    train_rows, held_rows = load_medquad()
    sets = word_sets(train_rows, load_tokenizer())
    corpus = [f"{r['question']} {r['answer']}" for r in train_rows]  # every training document
    results_path = out / "results.json"
    done = json.loads(results_path.read_text()) if results_path.is_file() else {"rows": []}
    have = {(r["words"], r["arm"], r["seed"], r.get("steps", 0)) for r in done["rows"]}
    tag = f"[{','.join(args.overrides)}]" if args.overrides else ""
    for wset in [] if args.table_only else args.words:
        words = sets[wset]
        data_dir = out / "data" / wset
        data_dir.mkdir(parents=True, exist_ok=True)
        texts = heldout_texts(held_rows, words, train_text="\n".join(corpus))
        docs = training_docs(train_rows, words)
        (data_dir / "words.txt").write_text("".join(w + "\n" for w in words))
        (data_dir / "train.txt").write_text("\n".join(docs) + "\n")
        (data_dir / "heldout.json").write_text(json.dumps(texts, indent=1))
        for seed in args.seeds:
            for arm in args.arms:
                for steps in ([0] if args.steps == 0 else [0, args.steps]):
                    label = arm + tag if steps and arm != "pieces" else arm  # overrides change training only
                    if (wset, label, seed, steps) in have:
                        continue
                    if steps == 0 and arm != "distill" and (seed != args.seeds[0] or any(
                            h[:2] == (wset, arm) and h[3] == 0 for h in have)):
                        continue  # pieces / mean_subword / adaptivocab rows do not depend on the seed
                    row = step0(arm, args.model, words, docs, texts, seed) if steps == 0 else \
                        trained(arm, args.model, words, data_dir, texts, steps, args.batch, seed,
                                args.max_length, args.overrides if arm != "pieces" else ())
                    row.update(arm=label, words=wset, steps=steps, distill_texts="train_docs",
                               **({"max_length": args.max_length} if steps else {}))
                    done["rows"].append(row)
                    results_path.write_text(json.dumps(done, indent=1))  # resumable: a crash keeps what is done
                    print(json.dumps({k: v for k, v in row.items() if k not in FORMS}
                                     | {f: {k: round(v, 4) for k, v in row[f].items() if k != "per_word"}
                                        for f in FORMS if f in row}), file=sys.stderr, flush=True)
    from qwenft.train.runinfo import cpu_model

    stamp = {"command": "python -m experiments.newword_real " + " ".join(argv if argv is not None else sys.argv[1:]),
             "machine": f"{cpu_model()} ({platform.machine()})", "date": datetime.date.today().isoformat(),
             "model": args.model}
    if not args.table_only:
        done.setdefault("stamps", []).append(stamp)
    results_path.write_text(json.dumps(done, indent=1))
    md = [f"# Real words, real text ({args.model})", "", "Commands: " + "; ".join(
        f"`{s['command']}` ({s['machine']}, {s['date']})" for s in done["stamps"]), ""]
    for steps in sorted({r["steps"] for r in done["rows"]}):
        rows = [r for r in done["rows"] if r["steps"] == steps]
        windows = sorted({r.get("max_length", 256) for r in rows}) if steps else []
        md += table(rows, f"step {steps}" + (f" (batch {args.batch}, windows of {', '.join(map(str, windows))} "
                                             "tokens)" if windows else ""))
    (out / "RESULTS.md").write_text("\n".join(md))
    print("\n".join(md))
    return done


if __name__ == "__main__":
    main()
