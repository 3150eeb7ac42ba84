"""The bad-input battery (issue #18): generated bad data files, word lists, config values, stdin and faults.

Every case runs the real CLI entry point (``qwenft.cli.main``, in-process: see ``tests/badinputs.py``) on
``model=tiny`` and asserts what a user must see: exit 2 (3 for an unwritable output), exactly one stderr line
``error: ...`` naming the file and line or the config key, no traceback, and nothing written or lost. The heavy
fault cases that need a trained run are in ``tests/test_interrupts.py`` (slow).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch
from badinputs import mounted, run_cli, tree_digest
from omegaconf import OmegaConf
from trainutil import TINY

from qwenft.config import compose
from qwenft.validation import RULES, Rule, _leaves, _rule_for

PC = {"prompt": "What is neurogenix?", "completion": "A drug."}
MSG = {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}
CLIN = {"scenario": "A 40-year-old man.", "questions": ["Diagnosis?"], "summary": "Man.", "answers": ["Flu."]}


def jl(*rows: object) -> bytes:
    """JSONL bytes; str rows verbatim, anything else as JSON."""
    return ("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n").encode()


# ------------------------------------------------------------------------------------------ data files
# (id, file name, content bytes, expected line or None, needle in the message)
DATA_CASES: list[tuple[str, str, bytes, int | None, str]] = [
    ("truncated-object", "d.jsonl", jl(PC, '{"prompt": "a", "completion": '), 2, "malformed JSON"),
    ("trailing-comma", "d.jsonl", jl(PC, PC, '{"prompt": "a", "completion": "b",}'), 3, "malformed JSON"),
    ("single-quotes", "d.jsonl", jl("{'prompt': 'a', 'completion': 'b'}"), 1, "malformed JSON"),
    ("unquoted-key", "d.jsonl", jl(PC, "{prompt: 1}"), 2, "malformed JSON"),
    ("bare-bracket", "d.jsonl", jl(PC, "["), 2, "malformed JSON"),
    ("two-objects-one-line", "d.jsonl", jl(PC, json.dumps(PC) + json.dumps(PC)), 2, "malformed JSON"),
    ("number-line", "d.jsonl", jl(PC, "42"), 2, "expected a JSON object, got number"),
    ("string-line", "d.jsonl", jl(PC, '"text"'), 2, "expected a JSON object, got string"),
    ("array-line", "d.jsonl", jl(PC, "[1, 2]"), 2, "expected a JSON object, got array"),
    ("null-line", "d.jsonl", jl(PC, "null"), 2, "expected a JSON object, got null"),
    ("bool-line", "d.jsonl", jl(PC, "true"), 2, "expected a JSON object, got boolean"),
    ("prompt-only", "d.jsonl", jl(PC, {"prompt": "a"}), 2, "missing column 'completion'"),
    ("completion-only", "d.jsonl", jl(PC, PC, {"completion": "a"}), 3, "missing column 'prompt'"),
    ("other-names", "d.jsonl", jl({"question": "a", "answer": "b"}), 1, "cannot tell the schema"),
    ("prompt-number", "d.jsonl", jl(PC, {"prompt": 3, "completion": "b"}), 2, "must be a string, got number"),
    ("completion-list", "d.jsonl", jl({"prompt": "a", "completion": ["b"]}), 1, "must be a string, got array"),
    ("prompt-null", "d.jsonl", jl(PC, {"prompt": None, "completion": "b"}), 2, "must be a string, got null"),
    ("prompt-empty", "d.jsonl", jl(PC, {"prompt": "", "completion": "b"}), 2, "empty column 'prompt'"),
    ("completion-blank", "d.jsonl", jl(PC, {"prompt": "a", "completion": " \t "}), 2, "empty column 'completion'"),
    ("id-object", "d.jsonl", jl({**PC, "id": {"a": 1}}), 1, "must be a string or integer"),
    ("dup-prompt", "d.jsonl", jl(PC, '{"prompt": "a", "prompt": "b", "completion": "c"}'), 2, "duplicate key 'prompt'"),
    ("dup-completion", "d.jsonl", jl('{"prompt": "a", "completion": "b", "completion": "c"}'), 1,
     "duplicate key 'completion'"),
    ("dup-nested", "d.jsonl", jl(MSG, '{"messages": [{"role": "user", "role": "assistant", "content": "x"}]}'), 2,
     "duplicate key 'role'"),
    ("dup-in-array-file", "d.json", b'[\n{"prompt": "a", "completion": "b"},\n{"prompt": "a", "prompt": "b", '
     b'"completion": "c"}\n]\n', 3, "duplicate key 'prompt'"),
    ("latin1", "d.jsonl", jl(PC) + '{"prompt": "caf\xe9", "completion": "b"}\n'.encode("latin-1"), 2,
     "not valid UTF-8"),
    ("byte-ff", "d.jsonl", jl(PC, PC) + b'{"prompt": "\xff", "completion": "b"}\n', 3, "not valid UTF-8: byte 0xff"),
    ("cut-multibyte", "d.jsonl", b'{"prompt": "\xe2\x82", "completion": "b"}\n', 1, "not valid UTF-8"),
    ("utf16", "d.jsonl", json.dumps(PC).encode("utf-16"), 1, "not valid UTF-8"),
    ("lone-surrogate", "d.jsonl", jl(PC, '{"prompt": "\\ud800", "completion": "b"}'), 2, "unpaired surrogate"),
    ("deep-nesting", "d.jsonl", jl(PC, "[" * 100000 + "]" * 100000), 2, "malformed JSON"),
    ("huge-int", "d.jsonl", jl(PC, '{"prompt": "a", "completion": ' + "1" * 5000 + "}"), 2, "malformed JSON"),
    ("messages-empty", "d.jsonl", jl({"messages": []}), 1, "non-empty array"),
    ("messages-no-user", "d.jsonl", jl({"messages": [{"role": "assistant", "content": "x"}]}), 1, "no user turn"),
    ("messages-last-user", "d.jsonl", jl(MSG, {"messages": [{"role": "user", "content": "x"}]}), 2,
     "must be the assistant"),
    ("messages-bad-role", "d.jsonl", jl({"messages": [{"role": "robot", "content": "x"}]}), 1, "has role 'robot'"),
    ("messages-content-int", "d.jsonl", jl({"messages": [{"role": "user", "content": 1}]}), 1,
     "content must be a string"),
    ("messages-not-objects", "d.jsonl", jl({"messages": ["hi"]}), 1, "must be an object"),
    ("clinical-mismatch", "d.jsonl", jl({**CLIN, "answers": ["a", "b"]}), 1, "must pair up"),
    ("clinical-no-questions", "d.jsonl", jl({**CLIN, "questions": [], "answers": []}), 1, "empty array"),
    ("clinical-questions-text", "d.jsonl", jl(CLIN, {**CLIN, "questions": "Diagnosis?"}), 2,
     "must be an array of strings"),
    ("clinical-missing-summary", "d.jsonl", jl({k: v for k, v in CLIN.items() if k != "summary"}), 1,
     "missing column 'summary'"),
    ("mixed-schemas", "d.jsonl", jl(PC, MSG), 2, "missing column 'prompt'"),
    ("empty-file", "d.jsonl", b"", None, "no records"),
    ("blank-lines", "d.jsonl", b"\n \n\t\n", None, "no records"),
    ("bom-only", "d.jsonl", b"\xef\xbb\xbf", None, "no records"),
    ("json-broken-array", "d.json", b'[\n{"prompt": "a", "completion": "b"},\n{"prompt": \n', 4, "malformed JSON"),
    ("json-extra-after-array", "d.json", b'[{"prompt": "a", "completion": "b"}]\n[]\n', 2, "extra data"),
    ("json-array-of-numbers", "d.json", b"[1, 2, 3]\n", 1, "expected a JSON object"),
    ("json-pretty-error", "d.json", b'{\n  "prompt": "a",\n  "completion": \n}\n', 4, "malformed JSON"),
    ("json-empty-array", "d.json", b"[]\n", None, "no records"),
    ("csv-unclosed-quote", "d.csv", b'prompt,completion\n"a,b\n', 2, "bad CSV"),
    ("csv-field-count", "d.csv", b"prompt,completion\na,b\nc,d,e\n", 3, "has 3 fields but the header has 2"),
    ("csv-semicolons", "d.csv", b"prompt;completion\na;b\n", 1, "';'-separated"),
    ("csv-dup-header", "d.csv", b"prompt,prompt,completion\na,b,c\n", 1, "duplicate column names"),
    ("csv-missing-column", "d.csv", b"prompt,answer\na,b\n", 2, "missing column 'completion'"),
    ("csv-latin1", "d.csv", "prompt,completion\ncaf\xe9,b\n".encode("latin-1"), 2, "not valid UTF-8"),
    ("csv-header-only", "d.csv", b"prompt,completion\n", None, "no records"),
    ("csv-empty", "d.csv", b"", None, "no records"),
    ("csv-blank-prompt", "d.csv", b"prompt,completion\n,b\n", 2, "empty column 'prompt'"),
    ("parquet-garbage", "d.parquet", b"PAR1 not really parquet", None, "cannot read Parquet"),
    ("parquet-empty", "d.parquet", b"", None, "cannot read Parquet"),
    ("docx-not-supported", "d.docx", b"PK\x03\x04", None, "unsupported file type '.docx'"),
    ("xlsx-not-supported", "d.xlsx", b"PK\x03\x04", None, "unsupported file type '.xlsx'"),
    ("no-extension", "data", jl(PC), None, "unsupported file type"),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_training_file(case, tmp_path, monkeypatch, capsys):
    _, name, content, line, needle = case
    path = tmp_path / name
    path.write_bytes(content)
    run = tmp_path / "run"
    res = run_cli(["train", *TINY, "data=files", f"data.train_path={path}", f"hydra.run.dir={run}"],
                  monkeypatch, capsys)
    msg = res.one_error_line()
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert msg.startswith(where) and needle in msg, msg
    assert not run.exists()  # refused before the model: Hydra's .hydra/ and log were held, so no folder either


def _special(tmp_path: Path, kind: str) -> Path:
    """Things that are not regular files, named like data files."""
    if kind == "fifo":
        path = tmp_path / "pipe.jsonl"
        os.mkfifo(path)  # a reader would block forever: must be refused without opening it
    elif kind == "device":
        path = tmp_path / "zero.jsonl"
        path.symlink_to("/dev/zero")  # endless bytes
    elif kind == "folder":
        path = tmp_path / "folder.jsonl"
        path.mkdir()
    elif kind == "not-a-dataset":
        path = tmp_path / "plain_folder"
        path.mkdir()
        (path / "x.bin").write_text("x")  # a folder of .txt/.jsonl/... files is data (datasets.load_dataset)
    elif kind == "missing":
        path = tmp_path / "nope.jsonl"
    elif kind == "dangling-link":
        path = tmp_path / "link.jsonl"
        path.symlink_to(tmp_path / "gone.jsonl")
    else:
        raise ValueError(kind)
    return path


SPECIAL = [("fifo", "a FIFO"), ("device", "a character device"), ("folder", "cannot read as a dataset"),
           ("not-a-dataset", "cannot read as a dataset"), ("missing", "file not found"),
           ("dangling-link", "file not found")]


@pytest.mark.parametrize(("kind", "needle"), SPECIAL, ids=[k for k, _ in SPECIAL])
@pytest.mark.parametrize("split", ["train", "val"])
def test_training_path_that_is_not_a_regular_file(kind, needle, split, tmp_path, monkeypatch, capsys):
    good = tmp_path / "good.jsonl"
    good.write_bytes(jl(PC, PC))
    bad = _special(tmp_path, kind)
    paths = {"train": good, "val": good, split: bad}
    res = run_cli(["train", *TINY, "data=files", f"data.train_path={paths['train']}",
                   f"data.val_path={paths['val']}", f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys, timeout=60)
    msg = res.one_error_line()
    assert msg.startswith(f"{bad}: ") and needle in msg, msg


def test_a_data_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch, capsys):
    path = tmp_path / "big.jsonl"
    path.write_bytes(jl(*[PC] * 200))
    res = run_cli(["train", *TINY, "data=files", f"data.train_path={path}", f"hydra.run.dir={tmp_path}/run"],
                  monkeypatch, capsys, env={"QWENFT_MAX_INPUT_MB": "0.001"})
    msg = res.one_error_line()
    assert msg.startswith(f"{path}: file is") and "QWENFT_MAX_INPUT_MB" in msg, msg


# ------------------------------------------------------------------------------------------- word lists
WORD_CASES: list[tuple[str, bytes | str, int | None, str]] = [
    ("empty", b"", None, "no words"),
    ("comments-only", b"# a comment\n# another\n", None, "no words"),
    ("blank-only", b"\n  \n\t\n", None, "no words"),
    ("tab-without-word", b"neurogenix\n\tgloss only\n", 2, "empty word before the tab"),
    ("latin1", "neurogenix\ncaf\xe9\n".encode("latin-1"), 2, "not valid UTF-8"),
    ("byte-ff-line-3", b"a\nb\n\xff\n", 3, "not valid UTF-8: byte 0xff"),
    ("utf16", "neurogenix\n".encode("utf-16"), 1, "not valid UTF-8"),
    ("fifo", "fifo", None, "a FIFO"),
    ("folder", "folder", None, "a folder"),
    ("missing", "missing", None, "words file not found"),
    ("device", "device", None, "a character device"),
]


def _words_path(tmp_path: Path, content: bytes | str) -> Path:
    if isinstance(content, str):
        return {"fifo": lambda: _special(tmp_path, "fifo"), "folder": lambda: _special(tmp_path, "folder"),
                "missing": lambda: tmp_path / "nope.txt", "device": lambda: _special(tmp_path, "device")}[content]()
    path = tmp_path / "words.txt"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", WORD_CASES, ids=[c[0] for c in WORD_CASES])
@pytest.mark.parametrize("verb", ["train", "extend"])
def test_bad_words_file(case, verb, tmp_path, monkeypatch, capsys):
    _, content, line, needle = case
    path = _words_path(tmp_path, content)
    args = [*TINY, f"tokenizer.words_file={path}"] if verb == "train" else \
        ["model=tiny", f"tokenizer.words_file={path}", f"out={tmp_path}/ext"]
    res = run_cli([verb, *args, f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys, timeout=60)
    msg = res.one_error_line()
    assert msg.startswith(f"{path}:{line}: " if line else f"{path}: ") and needle in msg, msg
    assert not (tmp_path / "ext").exists() and not (tmp_path / "run" / "run_info.json").exists()


def test_a_words_file_over_the_size_limit(tmp_path, monkeypatch, capsys):
    path = tmp_path / "words.txt"
    path.write_text("neurogenix\n" * 500)
    res = run_cli(["train", *TINY, f"tokenizer.words_file={path}", f"hydra.run.dir={tmp_path}/run"], monkeypatch,
                  capsys, env={"QWENFT_MAX_WORDS_MB": "0.001"})
    assert "QWENFT_MAX_WORDS_MB" in res.one_error_line()


# --------------------------------------------------------------------------------------- corpus (discover)
CORPUS_CASES: list[tuple[str, str, bytes, str]] = [
    ("empty-jsonl", "c.jsonl", b"", "no text found"),
    ("empty-txt", "c.txt", b"", "no text found"),
    ("blank-txt", "c.txt", b"\n\n  \n", "no text found"),
    ("latin1-txt", "c.txt", "neurogenix\ncaf\xe9\n".encode("latin-1"), ":2: not valid UTF-8"),
    ("latin1-jsonl", "c.jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"), ":1: not valid UTF-8"),
    ("binary-txt", "c.txt", bytes(range(256)), ":2: not valid UTF-8"),  # 0x0a is the end of line 1
    ("numbers-only-jsonl", "c.jsonl", b'{"n": 1}\n{"n": 2}\n', "no text found"),
    ("malformed-jsonl", "c.jsonl", b'{"text": "a"}\n{"text": \n', ":2: malformed JSON"),
    ("dup-key-jsonl", "c.jsonl", b'{"text": "a", "text": "b"}\n', ":1: duplicate key 'text'"),
    ("array-line", "c.jsonl", b'{"text": "a"}\n[1]\n', ":2: expected a JSON object"),
    ("csv-unclosed", "c.csv", b'text\n"abc\n', ":2: bad CSV"),
    ("pdf", "c.pdf", b"%PDF-1.4", "unsupported extension '.pdf'"),
]


@pytest.mark.parametrize("case", CORPUS_CASES, ids=[c[0] for c in CORPUS_CASES])
def test_bad_discover_corpus(case, tmp_path, monkeypatch, capsys):
    _, name, content, needle = case
    path = tmp_path / name
    path.write_bytes(content)
    res = run_cli(["discover", f"corpus={path}", f"out={tmp_path}/out", f"hydra.run.dir={tmp_path}/h"],
                  monkeypatch, capsys)
    msg = res.one_error_line()
    assert msg.startswith(str(path)) and needle in msg, msg
    assert not (tmp_path / "out").exists()


def test_discover_column_missing_on_a_row(tmp_path, monkeypatch, capsys):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "neurogenix"}\n{"other": "x"}\n')
    res = run_cli(["discover", f"corpus={path}", "columns=text", f"out={tmp_path}/o", f"hydra.run.dir={tmp_path}/h"],
                  monkeypatch, capsys)
    assert res.one_error_line().startswith(f"{path}:2: missing columns ['text']")


@pytest.mark.parametrize("kind", ["fifo", "device", "missing"])
def test_discover_corpus_that_is_not_a_regular_file(kind, tmp_path, monkeypatch, capsys):
    path = _special(tmp_path, kind)
    res = run_cli(["discover", f"corpus={path}", f"out={tmp_path}/o", f"hydra.run.dir={tmp_path}/h"],
                  monkeypatch, capsys, timeout=60)
    assert res.one_error_line().startswith(f"{path}: ")


# ------------------------------------------------------------------------------------------ config values


def _as_hydra_parses(text: str):  # noqa: ANN202
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text, text)


def _generated_bad_values(rule: Rule, typed: bool = False) -> list[str]:
    """Values each rule must refuse: wrong types, just below / above the range, non-finite numbers."""
    return [v for v in _candidates(rule) if not rule.accepts(_as_hydra_parses(v))
            and not (typed and rule.kind == "bool" and v == "2")]  # Hydra's typed schema reads 2 as true


def _candidates(rule: Rule) -> list[str]:
    if rule.kind == "int":
        vals = ["abc", "1.5"]
        if rule.lo is not None:
            vals.append(str(int(rule.lo) - 1 if int(rule.lo) - 1 not in rule.also else int(rule.lo) - 2))
        if rule.hi is not None and rule.hi < 10**7:
            vals.append(str(int(rule.hi) + 1))
        return vals
    if rule.kind == "float":
        vals = ["abc", "nan", "inf"]
        if rule.lo is not None:
            vals.append(str(rule.lo) if rule.lo_open else str(rule.lo - 1))
        if rule.hi is not None:
            vals.append(str(rule.hi * 2 + 1))
        return vals
    if rule.kind == "bool":
        return ["maybe", "2"]
    if rule.kind == "enum":
        return ["bogus"]
    if rule.kind == "any":
        return ["abc", "-7"]
    return []


ROOT_OVERRIDES = {
    "train": [*TINY], "answer": ["model=tiny", "retrieval=none"], "evaluate": ["model=tiny", "retrieval=none"],
    "discover": ["corpus=x.txt"], "extend": ["model=tiny", "tokenizer.words=[neurogenix]"],
    "export": ["run_dir=x"], "import_gguf": [], "report": [],
}
VERB_OF = {"import_gguf": "import-gguf"}
TYPED = ("tokenizer.",)  # Hydra's typed schema refuses some of these itself (another one-line path)


def config_cases() -> list[tuple[str, str, str, bool]]:
    """(config, key, bad value, slow) for every rule that applies to a key of the composed default config; the
    first bad value of each key runs by default, the others with the slow tests."""
    cases = []
    for name, overrides in ROOT_OVERRIDES.items():
        cfg = compose(name, overrides)
        tree = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
        for key in _leaves(tree):
            rule = _rule_for(RULES[name], key, cfg)
            if rule is None:
                continue
            values = _generated_bad_values(rule, typed=key.startswith(TYPED))
            cases += [(name, key, v, i > 0) for i, v in enumerate(values)]
    return cases


CONFIG_CASES = config_cases()


@pytest.mark.parametrize(("name", "key", "value"), [
    pytest.param(n, k, v, marks=[pytest.mark.slow] if slow else [], id=f"{n}:{k}={v}")
    for n, k, v, slow in CONFIG_CASES])
def test_bad_config_value(name, key, value, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    overrides = [o for o in ROOT_OVERRIDES[name] if not o.startswith(f"{key}=")]
    res = run_cli([VERB_OF.get(name, name), *overrides, f"{key}={value}", f"hydra.run.dir={run}"], monkeypatch, capsys)
    msg = res.one_error_line()
    assert msg.startswith(key), msg  # names the key first
    if not key.startswith(TYPED) or "must be" in msg:
        assert "must be" in msg, msg  # ... and what is allowed
    assert not run.exists()  # refused before Hydra made a run dir


def test_the_battery_covers_every_kind_of_rule():
    keys = {k for _, k, _, _ in CONFIG_CASES}
    for must in ("trainer.max_steps", "seed", "data.batch_size", "peft.r", "optim.lr", "data.max_length",
                 "generation.top_p", "max_words", "k", "digits", "scheduler.num_warmup_steps", "max_questions"):
        assert must in keys, must
    assert len(CONFIG_CASES) >= 120 and sum(not slow for *_, slow in CONFIG_CASES) >= 80


# the cases of the issue, by hand, with the message a user reads
ISSUE_CASES = [
    (["train", *TINY, "trainer.max_steps=abc"], "trainer.max_steps='abc': must be an integer in [1, "),
    (["train", *TINY, "seed=abc"], "seed='abc': must be an integer in [0, "),
    (["train", *TINY, "data.batch_size=0"], "data.batch_size=0: must be an integer in [1, "),
    (["train", *TINY, "peft.r=0"], "peft.r=0: must be an integer in [1, 4096]"),
    (["train", *TINY, "optim.lr=-1"], "optim.lr=-1: must be a number in (0, 10]"),
    (["train", *TINY, "data.max_length=-5"], "data.max_length=-5: must be an integer in [8, "),
    (["train", *TINY, "optim.scheduler=linear"], "optim.scheduler: no such key; the learning-rate schedule is its "
                                                 "own config group: use scheduler=linear"),
    (["train", *TINY, "data=files"], "data.train_path is required"),
    (["discover", "corpus=x.txt", "max_words=-5"], "max_words=-5: must be an integer in [1, "),
    (["train", *TINY, "data.val_path=v.jsonl"], "data.val_path is set but data.train_path is not"),
    (["train", *TINY, "trainer.max_steps=-1", "trainer.max_epochs=-1"], "trainer.max_steps=-1 with"),
    (["train", *TINY, "tokenizer.discover={min_count: 2, foo: 1}"], "tokenizer.discover.foo: unknown key"),
    (["train", *TINY, "tokenizer.words_file=null"], "no new words"),
    (["train", *TINY, "tokenizer=none", "tokenizer.words_file=null", "tokenizer.words=[neurogenix]"],
     "tokenizer.words=['neurogenix']: tokenizer=none does not extend the vocabulary, so these words would be dropped"),
    (["train", *TINY, "tokenizer=none"], "tokenizer.words_file="),  # TINY's words file, dropped the same way
    # keys that reach libraries: refused before the model loads, not by the library after it (issue 25)
    (["train", *TINY, "+trainer.bogus_flag=5"], "trainer.bogus_flag=5: pytorch_lightning.Trainer takes no argument"),
    (["train", *TINY, "+callbacks.best_checkpoint.montor=val/loss"],
     "callbacks.best_checkpoint.montor=val/loss: pytorch_lightning.callbacks.ModelCheckpoint takes no argument "
     "'montor'; did you mean monitor?"),
    (["train", *TINY, "+model.hiden_size=32"], "model.hiden_size=32: qwenft.model.sources.tiny takes no argument"),
    (["train", *TINY, "peft.target_modules=[no_such_proj]"], "peft.target_modules: 'no_such_proj' is no module of "
                                                             "Qwen2; did you mean o_proj or up_proj? LoRA can adapt: "),
    (["train", *TINY, "peft.target_modules=[q_proj,mlp]"], "peft.target_modules: 'mlp' is a Qwen2MLP in Qwen2, which "
                                                           "LoRA cannot adapt"),
    (["train", *TINY, "optim._target_=torch.optim.NoSuchOpt"], "optim._target_=torch.optim.NoSuchOpt: cannot import"),
    (["train", *TINY, "model.hidden_size=65"], "model.hidden_size=65 must be a multiple"),
    (["answer", "model=tiny", "max_questions=5000"], "max_questions=5000: must be an integer in [1, 1000]"),
    (["evaluate", "model=tiny", "strategies=[magic]"], "strategies=['magic']: must be a list of strategy names"),
    (["evaluate", "model=tiny", "budgets=[all]"], "budgets=['all']: must be a list from"),
    (["report", "metrics=[]"], "metrics=[]: must be a list of texts"),
    (["export"], "run_dir is required"),
    (["discover"], "corpus is required"),
]


@pytest.mark.parametrize(("args", "start"), ISSUE_CASES, ids=[" ".join(a[-1:]) for a, _ in ISSUE_CASES])
def test_issue_config_cases(args, start, tmp_path, monkeypatch, capsys):
    res = run_cli([*args, f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys)
    msg = res.one_error_line()
    assert msg.startswith(start), msg
    assert not (tmp_path / "run").exists()


HYDRA_CASES = [
    (["train", *TINY, "trainer.max_step=5"], "trainer.max_step: no such key; did you mean max_steps"),
    (["train", *TINY, "optim.learning_rate=1"], "optim.learning_rate: no such key"),
    (["train", *TINY, "data.batchsize=2"], "data.batchsize: no such key; did you mean batch_size?"),
    (["train", *TINY, "peft.rank=8"], "peft.rank: no such key"),
    (["train", *TINY, "seeds=1"], "seeds: no such key; did you mean seed?"),
    (["train", *TINY, "optim.num_warmup_steps=5"], "optim.num_warmup_steps: no such key; the warm-up belongs"),
    (["answer", "model=tiny", "generation.max_tokens=5"], "generation.max_tokens: no such key"),
    (["discover", "corpus=x.txt", "min_counts=2"], "min_counts: no such key; did you mean min_count"),
    (["train", *TINY, "trainer.max_steps=["], "cannot parse override 'trainer.max_steps=['"),
    (["train", *TINY, "data.columns={a:"], "cannot parse override 'data.columns={a:'"),
    (["train", *TINY, "optim.lr=)"], "cannot parse override 'optim.lr=)'"),
    (["train", *TINY, "=5"], "cannot parse override '=5': the key before '=' is empty"),
    (["train", *TINY, "model=nope"], "model=nope: no such option; choose one of:"),
    (["train", *TINY, "peft=qlora"], "peft=qlora: no such option; choose one of: full, lora"),
    (["train", *TINY, "scheduler=step"], "scheduler=step: no such option; choose one of: constant, cosine, linear"),
    (["train", *TINY, "trainer=tpu9"], "trainer=tpu9: no such option"),
    (["answer", "model=tiny", "strategy=magic"], "strategy=magic: no such option"),
    (["answer", "model=tiny", "retrieval=faiss"], "retrieval=faiss: no such option"),
    (["train", *TINY, "tokenizer.init=bogus"], "tokenizer.init=bogus: Invalid value 'bogus'"),
    (["train", *TINY, "tokenizer.rows_lr=abc"], "tokenizer.rows_lr=abc: Value 'abc'"),
    (["train", *TINY, "seed=0,1"], "seed=0,1: a comma-separated value is a sweep: add -m"),
    (["train", *TINY, "+data.max_length=3"], "Could not append to config"),
    (["train", "-m", *TINY, "seed=0,abc"], "seed='abc': must be an integer"),
    (["train", "-m", *TINY, "optim.lr=1e-4,-3"], "optim.lr=-3: must be a number in (0, 10]"),
    (["train", "-m", *TINY, "peft=lora,nope"], "peft=nope: no such option"),
]


@pytest.mark.parametrize(("args", "start"), HYDRA_CASES, ids=[a[-1] for a, _ in HYDRA_CASES])
def test_hydra_errors_are_one_line(args, start, tmp_path, monkeypatch, capsys):
    res = run_cli([*args, f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"], monkeypatch, capsys)
    msg = res.one_error_line()
    assert msg.startswith(start), msg
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def test_help_and_cfg_still_work(tmp_path, monkeypatch, capsys):
    res = run_cli(["train", "--cfg", "job", *TINY, "optim.lr=0.5"], monkeypatch, capsys)
    assert res.code in (0, None) and "lr: 0.5" in res.out
    res = run_cli(["discover", "--help"], monkeypatch, capsys)
    assert res.code in (0, None) and "corpus" in res.out


def test_words_without_extension_are_fine_when_scored():
    """``tokenizer=none`` keeps words only as ``eval_words_file`` (the OOV ablation): that is not refused."""
    from qwenft.validation import validate

    validate(compose("train", [*TINY, "tokenizer=none", "eval_words_file=${demo:words.txt}"]), "train")
    validate(compose("train", ["experiment=oov_ablation", "tokenizer=none"]), "train")


def test_data_files_requires_a_train_path_even_from_the_library():
    """``???`` merged over demo's ``train_path: null`` would keep the null; ``_required_`` says it instead."""
    from qwenft.errors import UserError
    from qwenft.validation import validate

    cfg = compose("train", [*TINY, "data=files"])
    assert cfg.data.train_path is None
    with pytest.raises(UserError, match="data.train_path is required"):
        validate(cfg, "train")
    validate(compose("train", [*TINY, "data=files", "data.train_path=x.jsonl"]), "train")


# ------------------------------------------------------------------------------------------ prompts / stdin
rng = random.Random(18)
STDIN_CASES: list[tuple[str, bytes, str]] = [
    *[(f"random-bytes-{i}", bytes(rng.randrange(128, 256) for _ in range(64)) + b"\nWhat?\n", "not valid UTF-8")
      for i in range(5)],
    ("latin1", "Patient with caf\xe9-au-lait spots. What is it?".encode("latin-1"), "<stdin>:1: not valid UTF-8"),
    ("latin1-line-3", "A.\nB.\nNa\xefve? What is it?\n".encode("latin-1"), "<stdin>:3: not valid UTF-8"),
    ("utf16", "A man. What is it?".encode("utf-16"), "not valid UTF-8"),
    ("cut-multibyte", b"A man \xe2\x82. What?", "not valid UTF-8"),
    ("empty", b"", "empty prompt"),
    ("blank", b" \n\t\n ", "empty prompt"),
    ("bom-only", b"\xef\xbb\xbf", "empty prompt"),
]


@pytest.mark.parametrize("case", STDIN_CASES, ids=[c[0] for c in STDIN_CASES])
def test_bad_stdin(case, tmp_path, monkeypatch, capsys):
    _, data, needle = case
    res = run_cli(["answer", "model=tiny", "retrieval=none"], monkeypatch, capsys, stdin=data)
    msg = res.one_error_line()
    assert needle in msg, msg
    assert res.out == ""


def test_stdin_over_the_limit_is_refused_not_truncated(monkeypatch, capsys):
    res = run_cli(["answer", "model=tiny", "retrieval=none"], monkeypatch, capsys,
                  stdin=b"A man. What is it?\n" * 200, env={"QWENFT_MAX_PROMPT_MB": "0.001"})
    assert res.one_error_line().startswith("<stdin>: input is over the limit")


def test_argv_prompt_with_undecodable_bytes(monkeypatch, capsys):
    """Bytes that are not UTF-8 in argv arrive as lone surrogates: refused by name, never sent to a tokenizer."""
    from qwenft.clinical.answer import read_prompt
    from qwenft.errors import DataError

    res = run_cli(["answer", "model=tiny", "retrieval=none", "prompt=A man caf\udce9. What?"], monkeypatch, capsys)
    assert res.one_error_line().startswith("cannot parse override 'prompt=")  # Hydra's grammar refuses it first
    with pytest.raises(DataError, match="prompt=:1: not valid UTF-8"):
        read_prompt(OmegaConf.create({"prompt": "A man caf\udce9. What?", "prompt_file": None}))


PROMPT_FILE_CASES = [("fifo", "a FIFO"), ("device", "a character device"), ("folder", "a folder"),
                     ("missing", "file not found")]


@pytest.mark.parametrize(("kind", "needle"), PROMPT_FILE_CASES, ids=[k for k, _ in PROMPT_FILE_CASES])
def test_bad_prompt_file(kind, needle, tmp_path, monkeypatch, capsys):
    path = _special(tmp_path, kind)
    res = run_cli(["answer", "model=tiny", "retrieval=none", f"prompt_file={path}"], monkeypatch, capsys, timeout=60)
    msg = res.one_error_line()
    assert msg.startswith(f"{path}: ") and needle in msg, msg


def test_latin1_prompt_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "p.txt"
    path.write_bytes("A man.\nCaf\xe9? What?\n".encode("latin-1"))
    res = run_cli(["answer", "model=tiny", "retrieval=none", f"prompt_file={path}"], monkeypatch, capsys)
    assert res.one_error_line().startswith(f"{path}:2: not valid UTF-8")


def test_a_thousand_questions_are_refused_before_the_model_loads(monkeypatch, capsys):
    prompt = "A 40-year-old man with a cough.\n" + "".join(f"{i}. What is finding {i}?\n" for i in range(1, 1001))
    res = run_cli(["answer", "model=tiny", "retrieval=none"], monkeypatch, capsys, stdin=prompt.encode())
    assert res.one_error_line().startswith("the prompt has 1000 questions, more than max_questions=64")


def test_a_prompt_longer_than_the_context_is_refused(monkeypatch, capsys):
    """200 KB of scenario: the tiny model reads 4 096 positions; refused with the numbers, not an OOM."""
    scenario = ("The patient reports intermittent chest pain radiating to the left arm. " * 2800)[:200_000]
    res = run_cli(["answer", "model=tiny", "retrieval=none"], monkeypatch, capsys,
                  stdin=(scenario + "\nWhat is the diagnosis?\n").encode())
    msg = res.one_error_line()
    assert msg.startswith("the prompt needs about") and "reads at most 4096" in msg, msg


# -------------------------------------------------------------------------------------- checkpoints / resume


def _junk_checkpoints(tmp_path: Path) -> dict[str, Path]:
    """Checkpoint files a resume must refuse with one line."""
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "global_step": 3}, good)
    data = good.read_bytes()
    out = {}
    for name, content in {"empty": b"", "random": bytes(random.Random(1).randrange(256) for _ in range(4096)),
                          "truncated-half": data[: len(data) // 2], "truncated-tail": data[:-30],
                          "text": b"not a checkpoint\n"}.items():
        p = tmp_path / f"{name}.ckpt"
        p.write_bytes(content)
        out[name] = p
    no_state = tmp_path / "no-state.ckpt"
    torch.save({"weights": torch.zeros(2)}, no_state)
    out["no-state-dict"] = no_state
    pickled = tmp_path / "pickle.ckpt"
    torch.save({"state_dict": {}, "obj": Path("x")}, pickled)  # not loadable with weights_only=True
    out["foreign-pickle"] = pickled
    return out


@pytest.mark.parametrize("name", ["empty", "random", "truncated-half", "truncated-tail", "text", "no-state-dict",
                                  "foreign-pickle"])
def test_unreadable_checkpoint_is_refused_and_the_run_is_untouched(name, tmp_path, monkeypatch, capsys):
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(_junk_checkpoints(tmp_path)[name], run / "checkpoints" / "last.ckpt")
    (run / "config.yaml").write_text("old: config\n")
    (run / "run_info.json").write_text('{"old": true}\n')
    before = tree_digest(run)
    res = run_cli(["train", *TINY, "ckpt_path=last", f"run_dir={run}", f"hydra.run.dir={tmp_path}/h"],
                  monkeypatch, capsys)
    msg = res.one_error_line()
    assert msg.startswith(str(run / "checkpoints" / "last.ckpt")) and "checkpoint" in msg, msg
    assert tree_digest(run) == before


def test_ckpt_path_that_does_not_exist(tmp_path, monkeypatch, capsys):
    res = run_cli(["train", *TINY, f"ckpt_path={tmp_path}/nope.ckpt", f"hydra.run.dir={tmp_path}/h"], monkeypatch,
                  capsys)
    assert "does not exist" in res.one_error_line()


def _old_run(tmp_path: Path, data_sha256: dict, tokenizer_sha256: str | None = None) -> Path:
    """A run dir as `qwenft train` leaves it: .hydra/, a job log, config, run_info, a checkpoint, history."""
    run = tmp_path / "old"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (run / ".hydra" / name).write_text(f"# the old run's {name}\n")
    (run / "cli.log").write_text("old log line\n")
    (run / "config.yaml").write_text("old: config\n")
    (run / "run_info.json").write_text(json.dumps({"data_sha256": data_sha256}))
    (run / "history.jsonl").write_text('{"step": 1, "train/loss": 2.0}\n')
    state = {"state_dict": {}, "global_step": 1, "qwenft_data_sha256": data_sha256}
    if tokenizer_sha256:
        state["qwenft_tokenizer_sha256"] = tokenizer_sha256
    torch.save(state, run / "checkpoints" / "last.ckpt")
    return run


def _demo_hashes() -> dict[str, str]:
    from qwenft.data.datamodule import load_splits

    cfg = compose("train", TINY)
    return {k: v.sha256 for k, v in load_splits(cfg.data).items()}


@pytest.mark.parametrize("change", ["train", "val", "split-recorded-not-given", "split-given-not-recorded"])
def test_resume_with_other_data_is_refused_and_writes_nothing(change, tmp_path, monkeypatch, capsys):
    hashes = _demo_hashes()
    recorded = dict(hashes)
    if change in ("train", "val"):
        recorded[change] = "0" * 64
    elif change == "split-recorded-not-given":
        recorded["extra"] = "1" * 64
    else:
        recorded.pop("test")
    run = _old_run(tmp_path, recorded)
    before = tree_digest(run)
    res = run_cli(["train", *TINY, "ckpt_path=last", f"hydra.run.dir={run}"], monkeypatch, capsys)
    msg = res.one_error_line()
    assert "resuming with other data" in msg and "allow_data_change=true" in msg, msg
    assert tree_digest(run) == before  # .hydra/, the log, config.yaml, run_info.json: all as they were


def test_resume_with_another_tokenizer_is_refused_and_writes_nothing(tmp_path, monkeypatch, capsys):
    run = _old_run(tmp_path, _demo_hashes(), tokenizer_sha256="f" * 64)
    before = tree_digest(run)
    res = run_cli(["train", *TINY, "ckpt_path=last", f"hydra.run.dir={run}"], monkeypatch, capsys)
    assert "trained with a different tokenizer" in res.one_error_line()
    assert tree_digest(run) == before


def test_a_resume_whose_checks_pass_gets_hydras_record_and_the_held_log_in_order(tmp_path, monkeypatch, capsys):
    """Hydra's record of a train job (.hydra/, the job log) waits until the run's checks pass (issue 28: a refused
    resume writes nothing without an undo); once they pass, both are written as Hydra writes them."""
    run = tmp_path / "run"
    quick = [a for a in QUICK if not a.startswith("trainer.max_steps=")]
    res = run_cli(["train", *quick, *DEMO_WORDS, "trainer.max_steps=2", "export.enabled=false",
                   f"hydra.run.dir={run}"], monkeypatch, capsys)
    assert res.code in (0, None), res.err[-2000:]
    first = (run / "cli.log").read_text()
    assert "trainer.max_steps=2" in (run / ".hydra" / "overrides.yaml").read_text()
    assert first.splitlines()[0].endswith(f"run dir: {run}")  # the held lines come first, in order
    res = run_cli(["train", *quick, *DEMO_WORDS, "trainer.max_steps=3", "export.enabled=false", "ckpt_path=last",
                   f"hydra.run.dir={run}"], monkeypatch, capsys)
    assert res.code in (0, None), res.err[-2000:]
    assert "ckpt_path=last" in (run / ".hydra" / "overrides.yaml").read_text()
    assert OmegaConf.load(run / ".hydra" / "config.yaml").trainer.max_steps == 3
    log = (run / "cli.log").read_text()
    assert log.startswith(first) and log[len(first):].splitlines()[0].endswith(f"run dir: {run}")
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 3


# ------------------------------------------------------------------- training-side combinations (issue #25)
# Valid settings that meet in a way the code did not expect: each ends in a correct run or one clear line.

#: the README's first command, made cheap: no W&B, two steps, one validation
QUICK = ["model=tiny", "logger=none", "callbacks.rich_progress_bar=null", "data.max_length=128", "data.batch_size=4",
         "data.max_val_examples=4", "trainer.precision=32-true", "validate_before=false",
         "callbacks.new_word_metrics.max_texts=4", "callbacks.clinical_eval.n_prompts=0", "trainer.max_steps=2",
         "trainer.val_check_interval=2", "callbacks.lr_monitor=null"]
ABSENT = ["tokenizer.words=[neurogenix,cardiofluxin]"]  # in no demo split: the issue's words
DEMO_WORDS = ["tokenizer.words_file=${demo:words.txt}"]  # the demo's own words, in every split


def _trained(run: Path, res) -> tuple[dict, dict]:  # noqa: ANN001 - an Outcome
    assert res.code in (0, None) and "Traceback" not in res.err, res.err[-3000:]
    assert (run / "merged" / "model.safetensors").is_file() and (run / "adapter").is_dir()
    return json.loads((run / "metrics.json").read_text()), json.loads((run / "run_info.json").read_text())


def _log(run: Path) -> str:
    return "".join(p.read_text() for p in run.glob("*.log"))


@pytest.mark.slow  # a real two-step run (~30 s on 2 shared cores)
def test_words_absent_from_validation_train_export_and_say_what_was_monitored(tmp_path, monkeypatch, capsys):
    """The issue's command: the best checkpoint monitored val/new_word_nll, which is never logged when no new word
    occurs in the validation text, and Lightning raised after training; now it monitors val/loss and says so."""
    run = tmp_path / "run"
    res = run_cli(["train", *QUICK, *ABSENT, f"hydra.run.dir={run}"], monkeypatch, capsys)
    metrics, info = _trained(run, res)
    assert metrics["global_step"] == 2 and "val/loss" in metrics and "val/new_word_nll" not in metrics
    assert info["monitors"]["best_checkpoint"] == {
        "monitor": "val/loss", "instead_of": "val/new_word_nll",
        "reason": "none of the 2 new words occurs in the 4 held-out texts scored (validation split)"}
    assert info["heldout"] == {"source": "validation split", "texts": 4, "new_word_occurrences": 0}
    assert "the best checkpoint monitors val/loss instead" in _log(run)
    assert (run / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize("how", ["run_dir", "hydra.run.dir"])
@pytest.mark.parametrize("kind", ["old-run", "user-folder"])
def test_a_new_run_refuses_a_folder_that_holds_files(how, kind, tmp_path, monkeypatch, capsys):
    """A fresh run (no ckpt_path=) into another run's folder replaced its config, run_info and last.ckpt and mixed
    two histories; into a user's folder it wrote beside their files. Refused before Hydra writes anything."""
    if kind == "old-run":
        run = _old_run(tmp_path, _demo_hashes())
    else:
        run = tmp_path / "mine"
        run.mkdir()
        (run / "notes.txt").write_text("my notes\n")
    before = tree_digest(run)
    res = run_cli(["train", *TINY, f"{how}={run}", f"hydra.sweep.dir={tmp_path}/s"], monkeypatch, capsys)
    msg = res.one_error_line()
    what = "another run (.hydra/, checkpoints/, cli.log" if kind == "old-run" else "1 entry (notes.txt)"
    assert msg.startswith(f"{how}={run}: already holds {what}") and "ckpt_path=last" in msg, msg
    assert tree_digest(run) == before


def test_an_empty_folder_is_a_fine_run_dir_and_the_refusal_is_also_in_the_library(tmp_path):
    """``train()`` itself (notebooks, benchmarks) refuses an occupied folder before reading any data."""
    from qwenft.errors import UserError
    from qwenft.train import rundir
    from qwenft.train.loop import train

    (tmp_path / "empty").mkdir()
    rundir.refuse_occupied(tmp_path / "empty", "run_dir")  # nothing there: no error
    run = _old_run(tmp_path, _demo_hashes())
    before = tree_digest(run)
    with pytest.raises(UserError, match=r"run_dir=.*already holds another run"):
        train(compose("train", [*TINY, f"paths.output_dir={run}"]), run_dir=run)
    assert tree_digest(run) == before


def test_two_processes_cannot_write_one_run_dir(tmp_path, monkeypatch, capsys):
    """The first holds run_dir/.qwenft.lock (flock) for the whole run; the second is one line, and writes nothing
    (a resume would pass the fresh-run check, so the lock is what stops it)."""
    import subprocess
    import sys
    import time

    run = _old_run(tmp_path, _demo_hashes())
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from qwenft.train.rundir import lock\n"
                               "with lock(Path(sys.argv[1])):\n print('locked', flush=True); time.sleep(120)",
                               str(run)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree_digest(run)
        start = time.time()
        res = run_cli(["train", *TINY, "ckpt_path=last", f"run_dir={run}"], monkeypatch, capsys)
        msg = res.one_error_line()
        assert msg == (f"run_dir={run}: another qwenft process (pid {holder.pid}) is writing this run directory; "
                       "wait for it to finish, or choose another folder"), msg
        assert tree_digest(run) == before and time.time() - start < 60  # before the model loads
    finally:
        holder.kill()
        holder.wait()
    from qwenft.train.rundir import lock

    with lock(run):  # the killed holder's lock went with it
        pass
    assert not (run / ".qwenft.lock").exists()


def test_an_output_folder_that_cannot_be_written_exits_3(tmp_path, monkeypatch, capsys):
    """The README's exit code for an output that cannot be written is 3 (it was 2 for an unwritable folder)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for args in (["train", *TINY, f"run_dir={blocker}/run"], ["train", *TINY, f"hydra.run.dir={blocker}/run"],
                 ["discover", "corpus=x.txt", f"out={blocker}/d", f"hydra.run.dir={tmp_path}/h"]):
        msg = run_cli(args, monkeypatch, capsys).one_error_line(code=3)
        assert f"cannot write there: {blocker} is a file, not a folder" in msg, (args, msg)


def test_run_dir_holds_hydras_files_and_nothing_lands_in_the_working_directory(tmp_path, monkeypatch, capsys):
    """With run_dir= set, Hydra wrote .hydra/ and its log into ./outputs/train/<time>/; export wrote
    ./outputs/export/<time>/. Now the run's own folder holds them, and export writes no file of its own."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run = tmp_path / "run"
    res = run_cli(["train", *TINY, f"run_dir={run}", f"ckpt_path={tmp_path}/nope.ckpt"], monkeypatch, capsys)
    assert "does not exist" in res.one_error_line()  # refused inside the job, after Hydra started it
    assert list(cwd.iterdir()) == [] and not run.exists()  # a refused new run leaves no folder either
    res = run_cli(["export", str(tmp_path)], monkeypatch, capsys)
    assert "no config.yaml here" in res.one_error_line()
    assert list(cwd.iterdir()) == []
    for verb in ("export", "import_gguf"):
        hydra = compose(verb, ["run_dir=x"] if verb == "export" else [], return_hydra_config=True).hydra
        assert hydra.run.dir == "." and hydra.output_subdir is None and "file" not in hydra.job_logging.handlers
    for verb in ("answer", "serve"):  # they made an empty outputs/<verb>/<time>/ on every call
        hydra = compose(verb, ["model=tiny"], return_hydra_config=True).hydra
        assert hydra.run.dir == "." and hydra.output_subdir is None
    hydra = compose("train", [*TINY, f"run_dir={run}"], return_hydra_config=True).hydra
    assert hydra.run.dir == str(run)


def _shaped_run(tmp_path: Path, data_sha256: dict | None = None, record: bool = True) -> Path:
    """An old run with TINY's config.yaml whose checkpoint records the demo data and (``record``) TINY's settings,
    as training writes them."""
    run = _old_run(tmp_path, data_sha256 or _demo_hashes())
    cfg = compose("train", [*TINY, f"paths.output_dir={run}"])
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if record:
        from qwenft.train.identity import checkpoint_shape

        state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        state["qwenft_shape"] = checkpoint_shape(cfg)
        torch.save(state, run / "checkpoints" / "last.ckpt")
    return run


RESHAPED = [("peft.r=8", "peft.r=16, now peft.r=8"),
            ("peft.target_modules=[q_proj,v_proj]",
             "peft.target_modules=null, now peft.target_modules=[q_proj,v_proj]"),
            ("peft=full", "peft.method=lora, now peft.method=full"),
            ("model.hidden_size=32", "model.hidden_size=64, now model.hidden_size=32"),
            ("tokenizer.trainable_rows=all", "tokenizer.trainable_rows=new_rows, now tokenizer.trainable_rows=all")]


@pytest.mark.parametrize(("change", "diff"), RESHAPED, ids=[c for c, _ in RESHAPED])
def test_a_resume_with_other_settings_is_refused_before_anything_is_written(change, diff, tmp_path, monkeypatch,
                                                                              capsys):
    """``peft.r=8`` on an r=16 run crashed inside training (state-dict size mismatch) after rewriting the finished
    run's config.yaml and run_info.json. Now one line, before the model loads, and the old run is as it was."""
    run = _shaped_run(tmp_path)
    before = tree_digest(run)
    res = run_cli(["train", *TINY, change, "ckpt_path=last", f"hydra.run.dir={run}"], monkeypatch, capsys)
    msg = res.one_error_line()
    assert msg == (f"ckpt_path={run}/checkpoints/last.ckpt: the checkpoint was trained with {diff}: a resume must "
                   "keep the settings that shape the checkpoint (model, peft, tokenizer); resume with the old "
                   "values, or start a new run in a new folder"), msg
    assert tree_digest(run) == before


def test_an_older_checkpoint_is_compared_with_its_runs_config(tmp_path, monkeypatch, capsys):
    """A checkpoint written before ``qwenft_shape`` existed: its run's config.yaml is the reference."""
    run = _shaped_run(tmp_path, record=False)
    before = tree_digest(run)
    res = run_cli(["train", *TINY, "peft.alpha=8", "ckpt_path=last", f"hydra.run.dir={run}"], monkeypatch, capsys)
    assert "trained with peft.alpha=32, now peft.alpha=8" in res.one_error_line()
    assert tree_digest(run) == before


def test_peft_refusing_target_modules_is_one_line_even_without_the_preflight():
    """Where the architecture is not known before loading (a hub model not cached), PEFT's own refusal after the
    model loads is still one line naming the key."""
    from qwenft.adapters.apply import PeftSpec, apply_peft
    from qwenft.errors import UserError
    from qwenft.model.sources import tiny

    with pytest.raises(UserError, match=r"^peft.target_modules=\['nope'\]: Target modules \{'nope'\} not found"):
        apply_peft(tiny().model, PeftSpec(target_modules=["nope"]), [], "frozen")


def test_resume_tensor_check_names_the_first_misfit():
    from qwenft.errors import UserError
    from qwenft.train.resume import check_resume_tensors

    now = {"model.a": torch.zeros(2, 3), "model.b": torch.zeros(4)}
    check_resume_tensors({"model.a": (2, 3), "model.b": (4,)}, now, Path("x.ckpt"))
    with pytest.raises(UserError, match=r"1 tensors have another size in this run \(e.g. model.a: \[8, 3\]"):
        check_resume_tensors({"model.a": (8, 3), "model.b": (4,)}, now, Path("x.ckpt"))
    with pytest.raises(UserError, match=r"1 only in the checkpoint, 0 only in this run, e.g. model.c"):
        check_resume_tensors({"model.a": (2, 3), "model.b": (4,), "model.c": (1,)}, now, Path("x.ckpt"))


@pytest.mark.parametrize("other", ["data", "settings"])
def test_export_refuses_another_runs_checkpoint(other, tmp_path, monkeypatch, capsys):
    """``qwenft export`` took a last.ckpt from another run (other data) and wrote this run's data hash into the
    card. The checkpoint's own records must match the run's run_info.json and config.yaml."""
    hashes = _demo_hashes()
    run = _shaped_run(tmp_path, hashes)
    (run / "run_info.json").write_text(json.dumps({"data_sha256": hashes}))
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    if other == "data":
        state["qwenft_data_sha256"] = {**hashes, "train": "a" * 64}
        needle = ("it was trained on other data (train sha256 aaaaaaaaaaaa…, this run's run_info.json: "
                  f"{hashes['train'][:12]}…)")
    else:
        state["qwenft_shape"]["peft.r"] = 4
        needle = "it was trained with peft.r=4, now peft.r=16 (this run's config.yaml)"
    torch.save(state, run / "checkpoints" / "last.ckpt")
    before = tree_digest(run)
    msg = run_cli(["export", str(run)], monkeypatch, capsys).one_error_line()
    assert msg.startswith(f"{run}/checkpoints/last.ckpt: not this run's checkpoint: ") and needle in msg, msg
    assert tree_digest(run) == before


@pytest.mark.slow  # two real runs (~1 min on 2 shared cores)
@pytest.mark.parametrize("change", ["peft.r=8", "peft.target_modules=[q_proj,v_proj]"])
def test_a_real_run_resumed_with_another_adapter_is_refused_and_kept(change, tmp_path, monkeypatch, capsys):
    """The battery's case end to end: a finished r=16 run, resumed with another adapter, crashed inside training
    (size mismatch) after rewriting its config.yaml and run_info.json."""
    run = tmp_path / "run"
    args = [*QUICK, *DEMO_WORDS, "callbacks.last_checkpoint.every_n_train_steps=2", f"run_dir={run}"]
    _trained(run, run_cli(["train", *args], monkeypatch, capsys))
    before = tree_digest(run)
    res = run_cli(["train", *args, change, "trainer.max_steps=4", "ckpt_path=last"], monkeypatch, capsys)
    assert "a resume must keep the settings that shape the checkpoint" in res.one_error_line()
    assert tree_digest(run) == before


WITH_WORD = ["Neurogenix was started.", "Then neurogenix again."]
WITHOUT = ["The patient rested.", "No new drug was given."]
#: (id, overrides, train texts, val texts or None, heldout file text or None, expected fallback reason or None)
MONITOR_CASES = [
    ("words-in-val", [], WITHOUT, WITH_WORD, None, None),
    ("words-absent-from-val", [], WITH_WORD, WITHOUT, None,
     "none of the 1 new words occurs in the 2 held-out texts scored (validation split)"),
    ("heldout-file-without-words", [], WITH_WORD, WITH_WORD, "\n".join(WITHOUT), "none of the 1 new words occurs in "
     "the 2 held-out texts scored (data.heldout_text=HELDOUT)"),
    ("heldout-file-with-words", [], WITHOUT, WITHOUT, "\n".join(WITH_WORD), None),
    ("no-val-split-words-in-train", [], WITH_WORD, None, None, None),
    ("no-val-split-no-word-anywhere", [], WITHOUT, None, None,
     "none of the 1 new words occurs in the 2 held-out texts scored (training texts (first 32; no validation split))"),
    ("new-word-metrics-off", ["callbacks.new_word_metrics=null"], WITH_WORD, WITH_WORD, None,
     "callbacks.new_word_metrics is off"),
    ("no-text-scored", ["callbacks.new_word_metrics.max_texts=0"], WITH_WORD, WITH_WORD, None,
     "no held-out text is scored (validation split, callbacks.new_word_metrics.max_texts=0)"),
    ("word-only-past-max-texts", ["callbacks.new_word_metrics.max_texts=1"], WITH_WORD, [*WITHOUT[:1], *WITH_WORD],
     None, "none of the 1 new words occurs in the 1 held-out texts scored (validation split)"),
]


@pytest.mark.parametrize("case", MONITOR_CASES, ids=[c[0] for c in MONITOR_CASES])
def test_what_the_best_checkpoint_monitors_is_decided_from_the_texts(case, tmp_path):
    """Every way the new words can be missing from the scored text: the decision is made before fit, from the
    texts, so validation never meets a key that is not logged."""
    from qwenft.data.text import read_texts
    from qwenft.train.heldout import heldout_texts, monitor_fallback

    _, extra, train_texts, val_texts, heldout_file, reason = case
    if heldout_file is not None:
        (tmp_path / "heldout.txt").write_text(heldout_file + "\n")
        extra = [*extra, f"data.heldout_text={tmp_path / 'heldout.txt'}"]
    cfg = compose("train", [*TINY, *extra])
    held = heldout_texts(cfg, train_texts, val_texts, read_texts)
    expected = reason.replace("HELDOUT", str(tmp_path / "heldout.txt")) if reason else None
    assert monitor_fallback(cfg, ["neurogenix"], held) == expected
    assert monitor_fallback(cfg, [], held) == "no new words in this run"


BEST_WITHOUT_VALIDATION = [
    (["data=files", "data.train_path=${demo:train.jsonl}"], "export.checkpoint=best: no validation split"),
    (["callbacks.best_checkpoint=null"], "export.checkpoint=best: no callback keeps a best checkpoint"),
    (["trainer.max_steps=2", "trainer.val_check_interval=5"],
     "export.checkpoint=best: trainer.val_check_interval=5 is past trainer.max_steps=2"),
]


@pytest.mark.parametrize(("extra", "start"), BEST_WITHOUT_VALIDATION, ids=["no-val-split", "callback-off",
                                                                          "interval-past-max-steps"])
def test_export_best_without_a_validation_is_refused_before_training(extra, start, tmp_path, monkeypatch, capsys):
    """It used to train to the end and then fail: 'no best checkpoint was saved'."""
    run = tmp_path / "run"
    res = run_cli(["train", *TINY, "export.checkpoint=best", *extra, f"hydra.run.dir={run}"], monkeypatch, capsys)
    assert res.one_error_line().startswith(start)
    assert not run.exists()


def test_discovery_that_finds_no_word_is_one_line(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    res = run_cli(["train", *TINY, "tokenizer.words_file=null", "tokenizer.discover={min_count: 1000000}",
                   f"run_dir={run}"], monkeypatch, capsys)
    assert res.one_error_line().startswith("tokenizer.discover={min_count: 1000000}: found no new word in the "
                                           "training data; lower min_count")
    assert not run.exists()


@pytest.mark.slow  # one real two-step run per case (~30 s each on 2 shared cores)
@pytest.mark.parametrize("case", ["val-split-without-the-word", "heldout-file-without-the-words",
                                  "best-export-with-words-absent", "no-val-split-no-word"])
def test_runs_whose_words_miss_the_scored_text_train_export_and_say_so(case, tmp_path, monkeypatch, capsys):
    pc = [{"prompt": f"What is item {i}?", "completion": f"Item {i} is neurogenix, taken daily."} for i in range(12)]
    plain = [{"prompt": f"What is thing {i}?", "completion": f"Thing {i} is aspirin."} for i in range(6)]
    (tmp_path / "train.jsonl").write_bytes(jl(*pc))
    (tmp_path / "val.jsonl").write_bytes(jl(*plain))
    (tmp_path / "heldout.txt").write_text("A quiet night on the ward.\nThe patient rested.\n")
    files = ["data=files", f"data.train_path={tmp_path / 'train.jsonl'}", "tokenizer.words=[neurogenix]"]
    extra, monitor = {
        "val-split-without-the-word": ([*files, f"data.val_path={tmp_path / 'val.jsonl'}"], "val/loss"),
        "heldout-file-without-the-words": ([*DEMO_WORDS, f"data.heldout_text={tmp_path / 'heldout.txt'}"], "val/loss"),
        "best-export-with-words-absent": ([*ABSENT, "export.checkpoint=best"], "val/loss"),
        "no-val-split-no-word": (["data=files", f"data.train_path={tmp_path / 'val.jsonl'}", *ABSENT], "val/loss"),
    }[case]
    run = tmp_path / "run"
    metrics, info = _trained(run, run_cli(["train", *QUICK, *extra, f"run_dir={run}"], monkeypatch, capsys))
    assert info["monitors"]["best_checkpoint"]["monitor"] == monitor and metrics["global_step"] == 2
    assert "val/new_word_nll" not in metrics
    if case == "best-export-with-words-absent":
        assert metrics["export/checkpoint"] == str(run / "checkpoints" / "best.ckpt")


# --------------------------------------------------------------------------------------------- reports


def _report_run(root: Path, name: str, metrics: str | dict, seed: int = 0) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"seed: {seed}\nmodel: {{name: tiny}}\n")
    (run / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    return run


BROKEN_METRICS = ['{"val/loss": 1.', "", "[1, 2]", "\xff\xfe", '{"val/loss": NaN']


@pytest.mark.parametrize("broken", BROKEN_METRICS, ids=["truncated", "empty", "array", "binary", "cut-nan"])
def test_report_names_and_skips_a_broken_run(broken, tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    _report_run(root, "good", {"val/loss": 2.0})
    bad = _report_run(root, "bad", broken)
    res = run_cli(["report", f"runs=[{root}]", "group_by=[seed]", "metrics=[val/loss]", "plots=false",
                   f"out={tmp_path}/out", f"hydra.run.dir={tmp_path}/h"], monkeypatch, capsys)
    assert res.code in (0, None), res.err
    warnings = [ln for ln in res.err_lines if ln.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: skipping run {bad}: metrics.json"), warnings
    assert "| 0 | 2.000 | 1 |" in (tmp_path / "out" / "table.md").read_text()


def test_report_with_only_broken_runs_is_one_error(tmp_path, monkeypatch, capsys):
    _report_run(tmp_path / "runs", "bad", '{"val/loss": ')
    res = run_cli(["report", f"runs=[{tmp_path}/runs]", "plots=false", f"out={tmp_path}/o",
                   f"hydra.run.dir={tmp_path}/h"], monkeypatch, capsys)
    assert res.one_error_line().startswith("no run directories")


def test_report_counts_each_run_once_and_says_over_how_many_runs(tmp_path):
    from qwenft.report import report

    root = tmp_path / "runs"
    _report_run(root, "a", {"val/loss": 2.0, "val/ppl": 5.0}, seed=0)
    _report_run(root, "b", {"val/loss": 4.0}, seed=0)  # no val/ppl: a mean over 1 run must not say n=2
    md = report([root, root / "a"], ["seed"], ["val/loss", "val/ppl"], tmp_path / "out", plots=False)
    assert "| 0 | 3.000 ± 1.414 | 5.000 (n=1) | 2 |" in md, md


# ---------------------------------------------------------------------------------- read-only and full disks


def test_read_only_run_dir_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    with mounted("ro", tmp_path / "ro") as ro:
        for args in (["train", *TINY, f"hydra.run.dir={ro}/run"],
                     ["train", *TINY, f"run_dir={ro}/run", f"hydra.run.dir={tmp_path}/h"],
                     ["discover", "corpus=x.txt", f"out={ro}/d", f"hydra.run.dir={tmp_path}/h2"],
                     ["report", f"out={ro}/r", f"hydra.run.dir={tmp_path}/h3"],
                     ["export", f"{ro}", f"hydra.run.dir={tmp_path}/h4"]):
            res = run_cli(args, monkeypatch, capsys)
            msg = res.one_error_line(code=3)  # 3: an output cannot be written (README "Reliability")
            assert "read-only filesystem" in msg, (args, msg)


def test_disk_full_while_writing_outputs_keeps_the_previous_version(tmp_path):
    """A real full tmpfs: each writer leaves the old file/folder and no temp file, and says so in one line."""
    from qwenft.atomic import atomic_dir, atomic_write_text
    from qwenft.errors import OutputError
    from qwenft.train.checkpoint_io import AtomicCheckpointIO

    with mounted("tmpfs", tmp_path / "full", size="1m") as full:
        atomic_write_text(full / "metrics.json", '{"old": 1}')
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(10)}}, full / "last.ckpt")
        with atomic_dir(full / "merged") as tmp:
            (tmp / "model.safetensors").write_bytes(b"old model")
        before = tree_digest(full)
        big = torch.zeros(1 << 20)  # 4 MiB > the 1 MiB disk
        with pytest.raises(OutputError, match=r"last.ckpt: No space left on device"):
            AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": big}}, full / "last.ckpt")
        with pytest.raises(OutputError, match=r"metrics.json: No space left on device"):
            atomic_write_text(full / "metrics.json", "x" * (2 << 20))
        with pytest.raises(OutputError, match=r"merged: No space left on device"):
            with atomic_dir(full / "merged") as tmp:
                (tmp / "model.safetensors").write_bytes(b"\0" * (2 << 20))
        assert tree_digest(full) == before  # old versions intact, no temp files
        assert sorted(p.name for p in full.iterdir()) == ["last.ckpt", "merged", "metrics.json"]


@pytest.mark.slow  # a real training step / real subprocesses
def test_disk_full_at_checkpoint_through_the_cli_is_one_line_exit_3(tmp_path, monkeypatch, capsys):
    """Simulated ENOSPC inside torch.save (in-process, so no mount is needed): exit 3, one line, no temp file."""
    import errno as errno_mod

    from qwenft.train import checkpoint_io

    def full(*a, **k):
        raise OSError(errno_mod.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_io.torch, "save", full)
    run = tmp_path / "run"
    res = run_cli(["train", *TINY, "trainer.max_steps=1", "callbacks.last_checkpoint.every_n_train_steps=1",
                   "data.max_val_examples=4", f"hydra.run.dir={run}"], monkeypatch, capsys)
    msg = res.one_error_line(code=3)
    assert msg.startswith(f"cannot write {run}/checkpoints/last.ckpt: No space left on device"), msg
    assert not list((run / "checkpoints").glob(".*tmp*")) and not (run / "merged").exists()
    assert not (run / "metrics.json").exists()


# ------------------------------------------------------------------------------ temp files, history, modes


def test_recover_restores_an_interrupted_export_and_removes_temp_files(tmp_path):
    import subprocess
    import sys

    from qwenft.atomic import recover

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that no longer runs
    (tmp_path / f".merged.old-{dead}").mkdir()
    (tmp_path / f".merged.old-{dead}" / "model.safetensors").write_bytes(b"previous export")
    (tmp_path / f".merged.tmp-{dead}-abc").mkdir()
    (tmp_path / f".merged.tmp-{dead}-abc" / "model.safetensors").write_bytes(b"half")
    (tmp_path / f".adapter.tmp-{dead}-x").mkdir()
    (tmp_path / f".metrics.json.tmp-{dead}-q").write_text("{")
    (tmp_path / f".last.ckpt.tmp-{dead}").write_bytes(b"half")
    live = tmp_path / f".tokenizer.tmp-{os.getpid()}-z"  # a live writer's temp dir is left alone
    live.mkdir()
    notes = recover(tmp_path)
    assert (tmp_path / "merged" / "model.safetensors").read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["merged", live.name]), notes


def test_a_group_of_outputs_is_replaced_all_or_nothing(tmp_path):
    from qwenft.atomic import atomic_group

    for name in ("adapter", "merged"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "w").write_text("old")
    (tmp_path / "metrics.json").write_text("old")
    before = tree_digest(tmp_path)
    with pytest.raises(RuntimeError, match="cut"):
        with atomic_group(tmp_path, ["adapter", "merged", "metrics.json"], tag="export") as stage:
            (stage / "adapter").mkdir()
            (stage / "adapter" / "w").write_text("new")
            raise RuntimeError("cut between two outputs")
    assert tree_digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "adapter", "merged", "metrics.json"]
    with atomic_group(tmp_path, ["adapter", "merged", "metrics.json"], tag="export") as stage:
        for name in ("adapter", "merged"):
            (stage / name).mkdir()
            (stage / name / "w").write_text("new")
        (stage / "metrics.json").write_text("new")
    assert [(tmp_path / f).read_text() for f in ("adapter/w", "merged/w", "metrics.json")] == ["new"] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "merged", "metrics.json"]


def test_a_signal_during_an_export_raises_and_one_during_its_renames_waits(tmp_path):
    import signal as sig

    from qwenft.errors import Interrupted
    from qwenft.train.export import ExportSignals

    with pytest.raises(Interrupted, match="SIGTERM during the export: nothing was exported") as stop:
        with ExportSignals(tmp_path):
            os.kill(os.getpid(), sig.SIGTERM)
            for _ in range(100):  # the handler runs between two bytecodes
                pass
    assert stop.value.exit_code == 143
    with pytest.raises(Interrupted, match=f"SIGINT at the end of the export: the export in {tmp_path} is complete"):
        with ExportSignals(tmp_path) as guard:
            guard.commit()
            os.kill(os.getpid(), sig.SIGINT)
            for _ in range(100):
                pass
            done = True  # the renames went on
    assert done and sig.getsignal(sig.SIGTERM) is not None


def test_validation_due_at_a_resumed_step_only_when_the_history_lacks_it(tmp_path):
    from qwenft.train.callbacks import validation_due

    hist = tmp_path / "history.jsonl"
    hist.write_text('{"step": 3, "train/loss": 1.0}\n{"step": 6, "val/loss": 1.0}\n')
    trainer = OmegaConf.create({"val_check_interval": 3, "check_val_every_n_epoch": None, "accumulate_grad_batches": 1})
    assert validation_due(3, trainer, hist) and not validation_due(6, trainer, hist)  # 6 was validated
    assert not validation_due(4, trainer, hist) and not validation_due(0, trainer, hist)
    assert not validation_due(3, OmegaConf.merge(trainer, {"check_val_every_n_epoch": 1}), hist)  # per epoch: not ours
    assert validation_due(3, OmegaConf.merge(trainer, {"val_check_interval": 6, "accumulate_grad_batches": 2}), hist)


def test_history_has_each_step_once_after_a_resume(tmp_path):
    from types import SimpleNamespace

    from qwenft.train.callbacks import History

    path = tmp_path / "history.jsonl"
    rows = [{"step": s, "train/loss": float(s)} for s in range(1, 6)] + [{"step": 3, "val/loss": 9.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "train/lo')  # cut by a kill
    hist = History(path)
    trainer = SimpleNamespace(global_rank=0, global_step=3, sanity_checking=False, log_every_n_steps=1,
                              callback_metrics={})
    hist.on_train_start(trainer, None)
    for step in (3, 4, 5):  # Lightning redoes the steps after the checkpoint (and may repeat step 3's val)
        trainer.global_step = step
        trainer.callback_metrics = {"train/loss": torch.tensor(10.0 + step)}
        hist.on_train_batch_end(trainer, None, None, None, 0)
        trainer.callback_metrics = {"val/loss": torch.tensor(1.0)}
        if step == 3:
            hist.on_validation_end(trainer, None)
    got = [json.loads(line) for line in path.read_text().splitlines()]
    keys = [(r["step"], "val" if "val/loss" in r else "train") for r in got]
    assert len(keys) == len(set(keys)) and sorted(keys) == sorted(
        [(1, "train"), (2, "train"), (3, "train"), (3, "val"), (4, "train"), (5, "train")])
    assert next(r for r in got if r["step"] == 4)["train/loss"] == 14.0  # the redone step, not the old one


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(mask, tmp_path):
    from qwenft.atomic import atomic_dir, atomic_write_text

    old = os.umask(mask)
    try:
        with atomic_dir(tmp_path / "merged") as tmp:
            (tmp / "model.safetensors").write_bytes(b"x")
            os.chmod(tmp / "model.safetensors", 0o600)  # as some writers create files
            (tmp / "sub").mkdir()
        atomic_write_text(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "merged").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "merged" / "sub").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "merged" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------------------ issue 25: tracebacks -> one line
EVAL_FAST = ["evaluate", "model=tiny", "retrieval=none", "n_prompts=1", "strategies=[decomposition]",
             "budgets=[per_question]", "generation.max_new_tokens=1", "progress=false"]
TRACEBACK_CASES = [  # (args, the message's start); each refused before a model loads or a file is written
    ([*EVAL_FAST, "bootstrap.confidence=1.5"], "bootstrap.confidence=1.5: must be a number in (0, 1)"),
    ([*EVAL_FAST, "bootstrap.confidence=0"], "bootstrap.confidence=0: must be a number in (0, 1)"),
    ([*EVAL_FAST, "bootstrap.n_resamples=-5"], "bootstrap.n_resamples=-5: must be an integer in [1, "),
    ([*EVAL_FAST, "bootstrap.n_resamples=0"], "bootstrap.n_resamples=0: must be an integer in [1, "),
    (["discover", "--config-dir", "/nonexistent", "corpus=x.txt"], "--config-dir /nonexistent: not found"),
    (["answer", "--config-dir", "/nonexistent", "model=tiny", "prompt=A man. Why?"],
     "--config-dir /nonexistent: not found"),
    (["answer", "model=tiny", "retrieval=none", "prompt=A man. Why?", "prompt_file=p.txt"],
     "prompt= and prompt_file=p.txt are both set"),
]


@pytest.mark.parametrize(("args", "start"), TRACEBACK_CASES, ids=[" ".join(a[-1:]) for a, _ in TRACEBACK_CASES])
def test_issue25_tracebacks_are_one_line(args, start, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.txt").write_text("A woman. What is it?\n")
    res = run_cli([*args, f"hydra.run.dir={tmp_path}/run", f"out={tmp_path}/out"]
                  if args[0] == "evaluate" else [*args, f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys)
    msg = res.one_error_line()
    assert msg.startswith(start), msg
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_bootstrap_settings_are_checked_before_generation_from_the_library():
    """``evaluate()`` called directly refuses a bad confidence before its first prompt, not after the last."""
    from qwenft.clinical.evaluate import evaluate, load_strategy
    from qwenft.errors import UserError

    class NoModel:  # generating anything would fail loudly
        def __getattr__(self, name):  # noqa: ANN001, ANN204
            raise AssertionError(f"the model was used ({name}) before the settings were checked")

    records = [{**CLIN, "id": "r1"}]
    for kw, needle in (({"confidence": 1.5}, "bootstrap.confidence=1.5"), ({"n_resamples": -5},
                                                                          "bootstrap.n_resamples=-5")):
        with pytest.raises(UserError, match=needle):
            evaluate(records, [load_strategy("decomposition")], NoModel(), None, 1, ["per_question"], {},
                     progress=False, **kw)


@pytest.mark.parametrize("kind", ["empty-dir", "missing", "file", "junk-files"])
def test_discover_tokenizer_path_that_is_not_a_tokenizer(kind, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("neurogenix is a drug.\n" * 5)
    tok = tmp_path / "tok"
    if kind == "empty-dir":
        tok.mkdir()
    elif kind == "file":
        tok.write_text("x")
    elif kind == "junk-files":
        tok.mkdir()
        (tok / "tokenizer.json").write_text("{not json")
    res = run_cli(["discover", f"corpus={corpus}", f"tokenizer_path={tok}", f"out={tmp_path}/out",
                   f"hydra.run.dir={tmp_path}/h"], monkeypatch, capsys)
    msg = res.one_error_line()
    needle = {"empty-dir": "no tokenizer files in it", "missing": "not found", "file": "is a file",
              "junk-files": "cannot load the tokenizer"}[kind]
    assert msg.startswith(f"tokenizer_path={tok}: {needle}"), msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("retrieval", ["dense", "hybrid"])
def test_dense_retrieval_without_the_extra_names_the_extra(retrieval, tmp_path, monkeypatch, capsys):
    """Without sentence-transformers: one line naming ``pip install 'qwenft[dense]'``, before the model loads."""
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails as if not installed
    loads = []
    monkeypatch.setattr("qwenft.clinical.answer.open_engine", lambda *a, **k: loads.append(1))
    res = run_cli(["answer", "model=tiny", f"retrieval={retrieval}", f"retrieval.cache_dir={tmp_path}/c",
                   "prompt=A man with a cough. What is it?", f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys)
    msg = res.one_error_line()
    assert "pip install 'qwenft[dense]'" in msg and msg.startswith("retrieval=dense"), msg
    assert not loads and res.out == ""


# --------------------------------------------------- combinations: valid settings that meet unexpectedly (#25)
ONE_Q = "A 40-year-old man has had a cough and night sweats for three weeks. What is the most likely diagnosis?"
NO_Q = "A 40-year-old man has had a cough and night sweats for three weeks."
GEN_FAST = ["generation.max_new_tokens=2", "generation.bf16=false", "model.tie_word_embeddings=false"]
UNRELATED_KB = [{"id": f"astro-{i}", "title": "astronomy", "text": f"Comet {i} orbits beyond Neptune every {i} years."}
                for i in range(1, 6)]
STRATEGY_DIR = Path(__file__).resolve().parents[1] / "qwenft" / "conf" / "strategy"
STRATEGIES = sorted(p.stem for p in STRATEGY_DIR.glob("*.yaml"))


def _answer_json(res) -> dict:  # noqa: ANN001 - Outcome
    assert res.code == 0 and "Traceback" not in res.err, (res.code, res.err[-3000:])
    return json.loads(res.out)


@pytest.fixture(scope="module")
def bm25_cache(tmp_path_factory) -> Path:
    """One BM25 index cache for the combination cases (an index is keyed by the KB's sha256)."""
    return tmp_path_factory.mktemp("bm25")


def _slow_unless(fast: bool) -> list:
    return [] if fast else [pytest.mark.slow]  # ~10 s each in-process: the first of each kind runs by default


@pytest.mark.parametrize(("strategy", "prompt"), [
    pytest.param(s, p, id=f"{s}-{pid}", marks=_slow_unless(pid == "one-question" or s == "decomposition"))
    for s in STRATEGIES for p, pid in ((ONE_Q, "one-question"), (NO_Q, "no-question"))])
def test_one_question_prompts_for_every_strategy(strategy, prompt, bm25_cache, tmp_path, monkeypatch, capsys):
    """A prompt of one question (or none: answered as one) through every strategy, retrieval on."""
    res = run_cli(["answer", "model=tiny", *GEN_FAST, f"strategy={strategy}", "retrieval=bm25", "k=2", "output=json",
                   f"retrieval.cache_dir={bm25_cache}", f"prompt={prompt}", f"hydra.run.dir={tmp_path}/run"],
                  monkeypatch, capsys)
    data = _answer_json(res)
    expected = "What is the most likely diagnosis?" if prompt == ONE_Q else NO_Q
    assert [a["question"] for a in data["answers"]] == [expected], data
    assert all(len(a["evidence"]) <= 2 for a in data["answers"])


@pytest.mark.parametrize("strategy", [pytest.param(s, marks=_slow_unless(s in ("decomposition", "pool_rerank")))
                                      for s in ("decomposition", "whole_prompt", "pool_rerank", "hyde")])
def test_retrieval_from_a_knowledge_base_with_no_overlap(strategy, tmp_path, monkeypatch, capsys):
    """No word of the prompt is in any document: the run answers (with whatever BM25 ranks), no crash."""
    kb = tmp_path / "kb.jsonl"
    kb.write_bytes(jl(*UNRELATED_KB))
    res = run_cli(["answer", "model=tiny", *GEN_FAST, f"strategy={strategy}", "retrieval=bm25",
                   f"retrieval.kb_path={kb}", f"retrieval.cache_dir={tmp_path}/bm25", "k=2", "output=json",
                   f"prompt={ONE_Q}",
                   f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys)
    data = _answer_json(res)
    assert len(data["answers"]) == 1
    assert set(d for a in data["answers"] for d in a["evidence"]) <= {d["id"] for d in UNRELATED_KB}


KB_CASES = [  # (content, needle): a knowledge base that cannot be searched is one line naming the file
    (b"", "no documents"),
    (b"\n  \n", "no documents"),
    (jl({"id": "a", "text": "x"}, "[" * 100_000 + "]" * 100_000), ":2: malformed JSON"),
    (jl('{"id": "a", "text": "x", "text": "y"}'), ":1: duplicate key 'text'"),
    (jl({"id": "a", "text": "   "}), ":1: each line needs a non-empty string 'text'"),
    (b"\xff\xfe", "not UTF-8"),
]


@pytest.mark.parametrize("retrieval", ["bm25", "hybrid"])
@pytest.mark.parametrize(("content", "needle"), KB_CASES, ids=[str(i) for i in range(len(KB_CASES))])
def test_an_unusable_knowledge_base_is_one_line_before_the_model(content, needle, retrieval, tmp_path, monkeypatch,
                                                                 capsys):
    kb = tmp_path / "kb.jsonl"
    kb.write_bytes(content)
    loads = []
    monkeypatch.setattr("qwenft.clinical.answer.open_engine", lambda *a, **k: loads.append(1))
    res = run_cli(["answer", "model=tiny", f"retrieval={retrieval}", f"retrieval.kb_path={kb}",
                   f"retrieval.cache_dir={tmp_path}/c", f"prompt={ONE_Q}", f"hydra.run.dir={tmp_path}/run"],
                  monkeypatch, capsys)
    msg = res.one_error_line()
    assert msg.startswith(str(kb)) and needle in msg, msg
    assert not loads and res.out == ""


def _clinical_file(tmp_path: Path, gold: bool, n: int = 3) -> Path:
    from qwenft.data.datamodule import DEMO_DIR

    recs = [json.loads(line) for line in (DEMO_DIR / "test.jsonl").read_text().splitlines()[:n]]
    if not gold:
        recs = [{k: v for k, v in r.items() if k != "gold_docs"} for r in recs]
    path = tmp_path / ("gold.jsonl" if gold else "nogold.jsonl")
    path.write_bytes(jl(*recs))
    return path


def test_evaluation_without_gold_documents_has_no_retrieval_metrics(tmp_path, monkeypatch, capsys):
    """Retrieval on, records without gold_docs: recall/hit/MRR do not apply (NaN, n=0, no column), not 0."""
    data = _clinical_file(tmp_path, gold=False)
    res = run_cli(["evaluate", "model=tiny", *GEN_FAST, f"data_path={data}", "retrieval=bm25",
                   f"retrieval.cache_dir={tmp_path}/bm25", "strategies=[decomposition,whole_prompt]",
                   "budgets=[per_question]", "n_prompts=null", "progress=false", "bootstrap.n_resamples=20",
                   f"out={tmp_path}/out", f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys)
    assert res.code == 0 and "Traceback" not in res.err, res.err[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text(), parse_constant=lambda c: float(c))
    for row in metrics["rows"]:
        for m in ("recall_at_k", "hit_at_k", "mrr"):
            assert row["n"][m] == 0 and row[m] != row[m], (m, row[m])  # NaN, on no prompt
        assert row["n"]["answer_f1"] == 3
    header = (tmp_path / "out" / "table.md").read_text().splitlines()[0]
    assert "recall@k" not in header and "hit@k" not in header and "answer F1" in header


def test_retrieval_only_without_gold_documents_is_one_line(tmp_path, monkeypatch, capsys):
    """retrieval_only scores nothing but retrieval against gold_docs: without any, refused before searching."""
    data = _clinical_file(tmp_path, gold=False)
    res = run_cli(["evaluate", "model=tiny", f"data_path={data}", "retrieval=bm25", "retrieval_only=true",
                   f"retrieval.cache_dir={tmp_path}/bm25", "progress=false", f"out={tmp_path}/out",
                   f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys)
    msg = res.one_error_line()
    assert msg.startswith("retrieval_only=true") and "gold_docs" in msg and str(data) in msg, msg
    assert not (tmp_path / "out").exists()


def test_gold_documents_that_are_not_in_the_knowledge_base_are_noted(tmp_path, monkeypatch, capsys):
    """Gold ids from another knowledge base score 0 everywhere; the table says why instead of a bare 0."""
    data = _clinical_file(tmp_path, gold=True)
    kb = tmp_path / "kb.jsonl"
    kb.write_bytes(jl(*UNRELATED_KB))
    res = run_cli(["evaluate", "model=tiny", f"data_path={data}", "retrieval=bm25", f"retrieval.kb_path={kb}",
                   "retrieval_only=true", f"retrieval.cache_dir={tmp_path}/bm25", "progress=false",
                   "n_prompts=null", "bootstrap.n_resamples=20", f"out={tmp_path}/out",
                   f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys)
    assert res.code == 0 and "Traceback" not in res.err, res.err[-3000:]
    table = (tmp_path / "out" / "table.md").read_text()
    assert "none of the gold document ids" in table and str(kb) in table, table


@pytest.mark.parametrize("k", ["0", "50"])
def test_k_zero_or_beyond_the_knowledge_base(k, tmp_path, monkeypatch, capsys):
    """k=0 with retrieval on answers without documents; k over the KB's size returns what there is."""
    kb = tmp_path / "kb.jsonl"
    kb.write_bytes(jl(*UNRELATED_KB))
    res = run_cli(["answer", "model=tiny", *GEN_FAST, "retrieval=bm25", f"retrieval.kb_path={kb}",
                   f"retrieval.cache_dir={tmp_path}/bm25", f"k={k}", "output=json", f"prompt={ONE_Q}",
                   f"hydra.run.dir={tmp_path}/run"], monkeypatch, capsys)
    data = _answer_json(res)
    assert len(data["answers"][0]["evidence"]) <= (0 if k == "0" else len(UNRELATED_KB))


def test_battery_size():
    """The issue asks for at least 200 generated bad inputs; these are the parametrized lists above."""
    n = (len(DATA_CASES) + 2 * len(SPECIAL) + 2 * len(WORD_CASES) + len(CORPUS_CASES) + len(CONFIG_CASES)
         + len(ISSUE_CASES) + len(HYDRA_CASES) + len(STDIN_CASES) + len(PROMPT_FILE_CASES) + len(BROKEN_METRICS)
         + len(TRACEBACK_CASES) + 2 * len(KB_CASES) + 2 * len(STRATEGIES))
    assert n >= 200, n


@pytest.mark.slow  # a real training step / real subprocesses
def test_a_real_subprocess_gives_the_same_single_line(tmp_path):
    """The in-process battery stands for the console script: one real run of each kind of refusal."""
    from trainutil import qwenft

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "a", "prompt": "b", "completion": "c"}\n')
    for args, needle in ((["train", *TINY, "optim.lr=-1"], "error: optim.lr=-1: must be a number in (0, 10]"),
                         (["train", *TINY, "data=files", f"data.train_path={bad}"], f"error: {bad}:1: duplicate key")):
        out = qwenft(*args, f"hydra.run.dir={tmp_path}/r", cwd=tmp_path)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert [ln for ln in out.stderr.splitlines() if ln.startswith("error:")] == [
            next(ln for ln in out.stderr.splitlines() if ln.startswith(needle))]


@pytest.mark.slow  # a short real training run
def test_linear_scheduler_works(tmp_path):
    """``scheduler=linear`` (the group, not ``optim.scheduler``) decays the lr linearly to 0 at max_steps."""
    from qwenft.train.loop import train_steps

    overrides = [o for o in TINY if not o.startswith("logger=")] + [
        "logger=none", "export.enabled=false", "scheduler=linear", "scheduler.num_warmup_steps=0"]
    train_steps(overrides, steps=4, run_dir=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    lrs = [r["train/lr_body"] for r in rows if "train/lr_body" in r]
    assert lrs == pytest.approx([2e-4 * (4 - s) / 4 for s in range(4)], rel=1e-6), lrs


def test_prefill_runs_the_head_on_one_position_only():
    """A 200 KB shared prefix once asked for 18 GB: the head (151 936 wide) ran over every prefix position. Now
    each call of the head sees one position per row (the prefill keeps only the last logits)."""
    from qwenft.clinical.generate import MIN_SHARED_PREFIX, generate_batch
    from qwenft.model.sources import tiny

    loaded = tiny(tie_word_embeddings=False, seed=0)
    scenario = "A 40-year-old man with a cough, fever and night sweats for three weeks. " * 8
    prompts = [f"{scenario}\nQuestion: {q}" for q in ("What is the diagnosis?", "Which test first?", "Treatment?")]
    positions: list[int] = []
    hook = loaded.model.get_output_embeddings().register_forward_hook(
        lambda _m, _args, out: positions.append(out.shape[-2]))
    try:
        out = generate_batch(loaded.model, loaded.tokenizer, prompts, True, max_new_tokens=3, bf16=False)
    finally:
        hook.remove()
    assert len(out) == 3 and len(scenario) // 8 > MIN_SHARED_PREFIX
    assert positions and max(positions) == 1, positions
