"""The synthetic clinical world: out-of-vocabulary names, determinism by seed, answers that need the knowledge
base, and a bundled demo set that the generator reproduces byte for byte."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from qwenft.data.datamodule import DEMO_DIR
from qwenft.data.decompose import to_training_examples
from qwenft.data.io import load_records
from qwenft.data.synthetic import build_world, entities, write_world
from qwenft.model.qwen_tokenizer import qwen25_tokenizer
from qwenft.tokenizer.extend import read_words_file

FILES = ("kb.jsonl", "words.txt", "train.jsonl", "val.jsonl", "test.jsonl", "train_prompt_completion.jsonl")


@pytest.fixture(scope="module")
def tok():
    return qwen25_tokenizer()


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_new_word_is_at_least_three_tokens_in_every_form(tok):
    words, glosses = read_words_file(DEMO_DIR / "words.txt")
    assert len(words) == len(set(words)) == 40 and set(glosses) == set(words)
    for w in words:
        for form in (w, " " + w, w.capitalize(), " " + w.capitalize()):
            assert len(tok(form, add_special_tokens=False).input_ids) >= 3, form
    kb = _jsonl(DEMO_DIR / "kb.jsonl")
    assert all(any(re.search(rf"(?<!\w){w}(?!\w)", d["text"]) for d in kb) for w in words)


def test_same_seed_same_bytes_other_seed_other_world(tmp_path, tok):
    a = write_world(tmp_path / "a", seed=3, n_train=6, n_val=2, n_test=2, n_diseases=4, tokenizer=tok)
    b = write_world(tmp_path / "b", seed=3, n_train=6, n_val=2, n_test=2, n_diseases=4, tokenizer=tok)
    c = write_world(tmp_path / "c", seed=4, n_train=6, n_val=2, n_test=2, n_diseases=4, tokenizer=tok)
    assert set(a) == {"kb", "words", "train", "val", "test", "train_prompt_completion"}
    for key in a:
        assert a[key].read_bytes() == b[key].read_bytes(), key
    assert a["words"].read_text() != c["words"].read_text()
    assert [e.name for e in entities(build_world(3, 4, tok))] == [d["title"] for d in _jsonl(a["kb"])]


def test_bundled_demo_is_what_the_generator_writes(tmp_path, tok):
    paths = write_world(tmp_path, seed=0, tokenizer=tok)  # the defaults: 200 / 40 / 40, 10 diseases
    for name in FILES:
        assert (DEMO_DIR / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert sum((DEMO_DIR / name).stat().st_size for name in FILES) < 2_000_000
    assert len(paths) == len(FILES)


def test_vignettes_need_the_monographs():
    kb = {d["id"]: d for d in _jsonl(DEMO_DIR / "kb.jsonl")}
    words, glosses = read_words_file(DEMO_DIR / "words.txt")
    diseases = [w for w in words if glosses[w].startswith("a disease of")]
    drugs = [w for w in words if " that treats " in glosses[w]]
    seen_ids = set()
    for split, n in (("train", 200), ("val", 40), ("test", 40)):
        records = load_records(DEMO_DIR / f"{split}.jsonl", schema="clinical").records  # valid clinical schema
        assert len(records) == n
        for rec in records:
            assert rec["id"] not in seen_ids
            seen_ids.add(rec["id"])
            assert 2 <= len(rec["questions"]) <= 5 and len(rec["answers"]) == len(rec["gold_docs"])
            asked = " ".join([rec["scenario"], *rec["questions"]])
            # the prompt never names the disease or its drug: those come from the knowledge base
            assert not any(w in asked for w in diseases + drugs), rec["id"]
            for answer, gold in zip(rec["answers"], rec["gold_docs"], strict=True):
                assert gold and set(gold) <= set(kb)
                evidence = " ".join(kb[g]["title"] + " " + kb[g]["text"] for g in gold)
                for w in rec["new_words"]:
                    if w in answer and w not in asked:
                        assert w in evidence, (rec["id"], w)
            reference = " ".join([rec["summary"], *rec["answers"]])
            assert rec["new_words"] and all(w in words for w in rec["new_words"])
            assert any(w in reference for w in rec["new_words"])


def test_prompt_completion_file_matches_the_training_format():
    rows = load_records(DEMO_DIR / "train_prompt_completion.jsonl", schema="prompt_completion").records
    train = _jsonl(DEMO_DIR / "train.jsonl")
    expected = [ex for rec in train for ex in to_training_examples(rec, "decomposition")]
    assert rows[: len(expected)] == expected
    kb = _jsonl(DEMO_DIR / "kb.jsonl")
    assert rows[len(expected):] == [{"prompt": f"What is {d['title']}?", "completion": d["text"]} for d in kb]


def test_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "qwenft.data.synthetic", "--out", str(tmp_path / "w"), "--seed",
                          "1", "--n-train", "3", "--n-val", "1", "--n-test", "1", "--n-diseases", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(_jsonl(tmp_path / "w" / "train.jsonl")) == 3 and len(_jsonl(tmp_path / "w" / "kb.jsonl")) == 8
    bad = subprocess.run([sys.executable, "-m", "qwenft.data.synthetic", "--out", str(tmp_path / "x"),
                          "--n-diseases", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "n-diseases" in bad.stderr
