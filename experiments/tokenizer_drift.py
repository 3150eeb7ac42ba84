"""Tokenizer drift on all of MedQuAD: the usual ``add_tokens``, qwenft before issue 15, qwenft now.

For each recipe, ``qwenft.tokenizer.drift.measure_drift`` compares the extended tokenizer with the original on
every MedQuAD text (question + answer): how many texts change at all, how many change anywhere else than an
occurrence of a new word becoming its one token (drift), and how many occurrences Qwen already spelled as one
token now read otherwise. Prints a markdown table with the command, machine and date; ``--out`` writes JSON.

    python -m experiments.tokenizer_drift [--words insulin hepatitis ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gzip
import json
import platform
import sys
from pathlib import Path

from tokenizers import AddedToken

from qwenft.model.qwen_tokenizer import qwen25_tokenizer
from qwenft.tokenizer.drift import measure_drift
from qwenft.tokenizer.vocab import ADDED, FormReport, byte_level, extend_tokenizer, normalise_words
from qwenft.train.runinfo import cpu_model

MEDQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "medquad.jsonl.gz"
# the issue's list, plus an invented word that starts with one of them (a prefix pair)
ISSUE_WORDS = ["insulin", "hepatitis", "diabetes", "pneumonia", "cardiac", "neuro", "warfarin", "metformin",
               "neurogenix"]


def usual(base, words: list[str]):
    """``tokenizer.add_tokens(words)``: one added token per word, matched anywhere."""
    tok = copy.deepcopy(base)
    tok.add_tokens(words)
    return tok, [FormReport(w, w, ADDED, "", tok.convert_tokens_to_ids(w)) for w in words]


def previous(base, words: list[str]):
    """qwenft before issue 15: both forms added whenever the form is not a vocabulary entry itself."""
    tok, forms = copy.deepcopy(base), []
    vocab = base.get_vocab()
    for w in words:
        single = [len(base(f, add_special_tokens=False).input_ids) == 1 for f in (" " + w, w)]
        if all(single):
            continue  # dropped as "already a single token"
        for form, single_word in ((" " + w, False), (w, True)):
            if form in vocab or byte_level(form) in vocab:
                continue
            tok.add_tokens([AddedToken(form, single_word=single_word, normalized=True, special=False)])
            forms.append(FormReport(w, form, ADDED, "", tok.convert_tokens_to_ids(form)))
    return tok, forms


def current(base, words: list[str]):
    tok, _, forms = extend_tokenizer(base, normalise_words(words)[0])
    return tok, forms


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", nargs="+", default=ISSUE_WORDS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    with gzip.open(MEDQUAD, "rt", encoding="utf-8") as f:
        texts = [(r := json.loads(line))["question"] + "\n" + r["answer"] for line in f]
    base = qwen25_tokenizer()
    results = {}
    for name, recipe in (("add_tokens (usual recipe)", usual), ("qwenft before #15", previous),
                         ("qwenft now", current)):
        tok, forms = recipe(base, list(args.words))
        results[name] = {"new_tokens": sum(f.status == ADDED for f in forms),
                         **measure_drift(texts, base, tok, forms).as_dict()}
        print(name, json.dumps(results[name]), file=sys.stderr)
    stamp = {"command": "python -m experiments.tokenizer_drift " + " ".join(argv or sys.argv[1:]),
             "machine": f"{cpu_model()} ({platform.machine()})", "date": datetime.date.today().isoformat(),
             "words": args.words, "texts": len(texts)}
    cols = ["new_tokens", "changed_texts", "drifted_texts", "kept_changed", "occurrences", "one_token_before",
            "one_token_after", "longer_word_splits"]
    lines = [f"Words: {', '.join(args.words)}; {len(texts)} MedQuAD texts (question + answer). "
             f"`{stamp['command'].strip()}`, {stamp['machine']}, {stamp['date']}.", "",
             "| recipe | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(str(r[c]) for c in cols) + " |" for n, r in results.items()]
    print("\n".join(lines))
    out = {"stamp": stamp, "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
