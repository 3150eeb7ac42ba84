"""The generation time a vocabulary extension saves: the same answers decoded with Qwen's pieces and with new tokens.

    python -m experiments.bench.newword_gen_time [--data experiments/results/newword_real/clean/data/discover]
        [--texts 40] [--repeats 3] [--out experiments/results/newword_gen_time]

Each held-out text of ``newword_real``'s question-answer form (``A patient asks about W. What is W? <sentence>``,
the sentence from a held-out MedQuAD document) is cut into a prompt (up to the second question mark) and its
answer. Both tokenizers encode the *same* characters; the answer is then decoded token by token with a KV cache
(prefill the prompt, one forward per answer token: what greedy generation of that exact answer costs), timed with
the pieces and with the extension on the same model load, alternating per text so drift hits both arms alike.
The words are ``newword_real``'s ``discover`` set; the new rows' init does not change the cost (same shapes: the new
tokens fit into the spare rows of Qwen2.5's 151 936-row matrix), so ``mean_subword`` is used.

Reports, over texts: answer tokens, seconds per answer (median of ``--repeats``), the paired ratio extension /
pieces with a 95 % interval (``experiments.stats``), and tokens per second.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from experiments.stats import fmt_ci, mean_ci


def split_prompt(text: str) -> tuple[str, str]:
    """``A patient asks about W. What is W? <sentence>`` -> (the question part, the sentence)."""
    cut = text.index("? ") + 1
    return text[:cut], text[cut:]


@torch.no_grad()
def decode_seconds(model, prompt_ids: list[int], answer_ids: list[int]) -> float:  # noqa: ANN001
    """Wall time of a prefill of ``prompt_ids`` then one cached forward per answer token (teacher-forced greedy)."""
    start = time.perf_counter()
    out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    past = out.past_key_values
    for tok in answer_ids:
        out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="offline")
    ap.add_argument("--data", default="experiments/results/newword_real/clean/data/discover")
    ap.add_argument("--texts", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="experiments/results/newword_gen_time")
    args = ap.parse_args(argv)
    from hydra.utils import instantiate

    from qwenft.config import compose
    from qwenft.tokenizer.extend import extend_model
    from qwenft.train.runinfo import cpu_model

    data = Path(args.data)
    words = [w.strip() for w in (data / "words.txt").read_text().splitlines() if w.strip()]
    texts = json.loads((data / "heldout.json").read_text())["qa"][: args.texts]
    loaded = instantiate(compose("train", [f"model={args.model}"]).model)
    model, pieces = loaded.model.eval(), loaded.tokenizer
    extended = extend_model(model, pieces, words, init="mean_subword").tokenizer
    rows = []
    for i, text in enumerate(texts):
        prompt, answer = split_prompt(text)
        arms = {}
        for name, tok in (("pieces", pieces), ("extended", extended)):
            p_ids = tok(prompt, add_special_tokens=False).input_ids
            a_ids = tok(answer, add_special_tokens=False).input_ids
            arms[name] = (p_ids, a_ids)
        order = ("pieces", "extended") if i % 2 == 0 else ("extended", "pieces")
        decode_seconds(model, *arms[order[0]])  # warm-up for this length
        times: dict[str, list[float]] = {"pieces": [], "extended": []}
        for _ in range(args.repeats):
            for name in order:
                times[name].append(decode_seconds(model, *arms[name]))
        rows.append({"text": i, **{f"{n}_answer_tokens": len(arms[n][1]) for n in arms},
                     **{f"{n}_prompt_tokens": len(arms[n][0]) for n in arms},
                     **{f"{n}_seconds": statistics.median(times[n]) for n in arms}})
        print(json.dumps(rows[-1]), flush=True)
    ratio = [r["extended_seconds"] / r["pieces_seconds"] for r in rows]
    tok_ratio = [r["extended_answer_tokens"] / r["pieces_answer_tokens"] for r in rows]
    summary = {
        "n_texts": len(rows),
        "answer_tokens": {n: statistics.fmean(r[f"{n}_answer_tokens"] for r in rows) for n in ("pieces", "extended")},
        "seconds": {n: mean_ci([r[f"{n}_seconds"] for r in rows]) for n in ("pieces", "extended")},
        "time_ratio": mean_ci(ratio), "token_ratio": mean_ci(tok_ratio),
        "command": "python -m experiments.bench.newword_gen_time " + " ".join(argv or []),
        "machine": f"{cpu_model()} ({platform.machine()})", "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(), "model": args.model, "words": len(words),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    md = ["# Generation time saved by the extension (same answers)", "",
          f"`{summary['command']}` — {summary['machine']}, {summary['threads']} threads, {summary['date']}, "
          f"model {args.model}, {len(words)} words (`discover`), {len(rows)} held-out QA-form texts.", "",
          "| arm | answer tokens (mean) | seconds per answer, mean [95 % CI] |", "|---|---|---|"]
    for n in ("pieces", "extended"):
        md.append(f"| {n} | {summary['answer_tokens'][n]:.1f} | {fmt_ci([r[f'{n}_seconds'] for r in rows])} |")
    md += ["", f"Paired per text, extended / pieces: tokens {fmt_ci(tok_ratio)}, time {fmt_ci(ratio)} (n={len(rows)}).",
           ""]
    (out / "RESULTS.md").write_text("\n".join(md))
    print("\n".join(md))
    return summary


if __name__ == "__main__":
    main()
