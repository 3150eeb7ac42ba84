"""experiments/newword_bench.py runs every kind of arm end to end (tiny model, 1 step): the numbers compare."""

from __future__ import annotations

import json
import math

import pytest

from experiments.newword_bench import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, documents, invented_words, main


def test_invented_words_and_templates_are_seeded_and_held_out(tmp_path):
    from qwenft.model.qwen_tokenizer import qwen25_tokenizer

    words = invented_words(0)
    assert words == invented_words(0) and words != invented_words(1)
    flat = [w for ws in words.values() for w in ws]
    tok = qwen25_tokenizer()
    assert all(len(tok(" " + w).input_ids) > 1 for w in flat)  # Qwen splits every one of them
    assert not {t for ts in TRAIN_TEMPLATES.values() for t in ts} & {t for ts in HELDOUT_TEMPLATES.values() for t in ts}
    docs = documents(words, HELDOUT_TEMPLATES, 5, 1)
    assert docs == documents(words, HELDOUT_TEMPLATES, 5, 1) and all(any(w in d for w in flat) for d in docs)


@pytest.mark.slow
def test_bench_runs_the_arms_on_tiny(tmp_path):
    out = main(["--model", "tiny", "--steps", "1", "--seeds", "0", "--arms", "none", "usual", "qwenft",
                "--train-docs", "16", "--heldout-docs", "4", "--out", str(tmp_path)])
    rows = {r["arm"]: r for r in out["rows"]}
    assert set(rows) == {"none", "usual", "qwenft"}
    assert len({r["occurrences"] for r in rows.values()}) == 1 and rows["none"]["occurrences"] > 0
    assert all(math.isfinite(r["new_word_nll"]) for r in rows.values())
    # a random tiny model is close to uniform: k pieces cost about k x ln(rows), one token about ln(rows)
    assert rows["none"]["new_word_nll"] > 2 * rows["qwenft"]["new_word_nll"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["usual"]["new_word_nll_vs_usual"] == 1.0 and (tmp_path / "RESULTS.md").exists()
    # the first occurrence of a word in a document has nothing to copy: fewer of them than occurrences, each scored
    assert 0 < rows["none"]["first_occurrences"] < rows["none"]["occurrences"]
    assert all(math.isfinite(r["first_new_word_nll"]) for r in rows.values())
    assert (tmp_path / "data" / "heldout.txt").read_text().count("\n") == 4


def test_combine_merges_runs_of_the_same_benchmark_and_refuses_others(tmp_path):
    from experiments.newword_bench import combine

    def run(d: str, rows: list[dict], **stamp) -> str:
        base = {"model": "offline", "steps": 40, "batch": 8, "words": ["a"], "heldout_docs": 80, "occurrences": 5,
                "command": f"python -m experiments.newword_bench {d}", "machine": "cpu", "date": "2026-11-25",
                "seeds": sorted({r["seed"] for r in rows})}
        (tmp_path / d).mkdir()
        (tmp_path / d / "results.json").write_text(json.dumps({"stamp": {**base, **stamp}, "rows": rows}))
        return str(tmp_path / d)

    def row(arm: str, seed: int, nll: float) -> dict:
        return {"arm": arm, "seed": seed, "seconds": 10.0, "new_word_nll": nll, "bits_per_byte": 1.0,
                "occurrences": 5}

    a = run("a", [row("usual", 0, 10.0), row("qwenft", 0, 4.0)])
    b = run("b", [row("usual", 1, 12.0), row("qwenft", 1, 2.0)])
    out = combine([a, b], tmp_path / "both")
    assert out["summary"]["usual"]["seeds"] == 2 and out["summary"]["usual"]["new_word_nll"][0] == 11.0
    assert out["summary"]["qwenft"]["new_word_nll_vs_usual"] == pytest.approx(3.0 / 11.0)
    assert out["summary"]["qwenft"]["first_new_word_nll"] is None  # rows scored before first occurrences existed
    # paired by seed: 6 and 10, mean 8, t interval 8 ± 12.706 x sd 2.83 / sqrt 2
    assert out["summary"]["usual"]["d_new_word_nll"] == pytest.approx((8.0, 8.0 - 25.412, 8.0 + 25.412), abs=1e-3)
    md = (tmp_path / "both" / "RESULTS.md").read_text()
    assert "experiments.newword_bench a" in md and "experiments.newword_bench b" in md
    with pytest.raises(SystemExit, match="not the same benchmark"):
        combine([a, run("c", [row("usual", 2, 1.0)], steps=20)], tmp_path / "bad")
    with pytest.raises(SystemExit, match="appears twice"):
        combine([a, a], tmp_path / "twice")
