"""Zero-shot new-word NLL right after initialisation, per init strategy, on held-out text.

    python -m experiments.zero_shot_init model=offline out=experiments/results/zero_shot_init.md

Every arm starts from the same weights; "no extension" scores the words as the original pieces. Per-word NLL and
bits per byte are comparable across the arms (qwenft.metrics.newword); per-token perplexity would not be.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from qwenft.cli import conf_dir
from qwenft.metrics.newword import new_word_nll
from qwenft.tokenizer.extend import extend_model, read_words_file

DEMO = Path(__file__).resolve().parents[1] / "qwenft" / "resources" / "demo"


def heldout_texts(path: Path) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["scenario"] + "\n" + r["summary"] + "\n" + "\n".join(r["answers"]) for r in rows]


def main(overrides: list[str]) -> str:
    opts = dict(o.split("=", 1) for o in overrides)
    out = Path(opts.pop("out", "experiments/results/zero_shot_init.md"))
    model_name = opts.pop("model", "offline")
    words, glosses = read_words_file(opts.pop("words_file", DEMO / "words.txt"))
    texts = heldout_texts(Path(opts.pop("heldout", DEMO / "val.jsonl")))[: int(opts.pop("n", 40))]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("extend", overrides=[f"model={model_name}"])
    rows = []
    for init in ["none", "mean_subword", "description", "default", "random"]:
        t = time.perf_counter()
        loaded = instantiate(cfg.model)
        tok = loaded.tokenizer
        if init != "none":
            tok = extend_model(loaded.model, loaded.tokenizer, words, init=init, glosses=glosses).tokenizer
        s = new_word_nll(loaded.model, tok, texts, words)
        rows.append((init, s.new_word_nll, s.new_word_ppl, s.bits_per_byte, s.occurrences, time.perf_counter() - t))
        print(rows[-1], flush=True)
    md = [f"Zero-shot, right after init; model={model_name}; {len(texts)} held-out demo texts; "
          f"{len(words)} new words.\n",
          "| init | new-word NLL (nats/occurrence) | new-word ppl | bits/byte | occurrences |",
          "|---|---|---|---|---|"]
    md += [f"| {r[0]} | {r[1]:.3f} | {r[2]:.3g} | {r[3]:.4f} | {r[4]} |" for r in rows]
    text = "\n".join(md) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + f"\nCommand: `python -m experiments.zero_shot_init {' '.join(overrides)}`\n")
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
