"""Raw text (continued pretraining) on real MedQuAD text: every token trained, long documents windowed and counted."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from trainutil import TINY, qwenft

from qwenft.config import compose, conf_dir
from qwenft.data.datamodule import TrainData, collate_packed, load_splits, prepare, split_texts
from qwenft.data.format import IGNORE, TEXT_EOS, encode_text, text_windows
from qwenft.data.io import load_records
from qwenft.data.text import read_texts
from qwenft.errors import DataError, UserError
from qwenft.metrics.newword import new_word_nll
from qwenft.model.qwen_tokenizer import qwen25_tokenizer
from qwenft.model.sources import tiny
from qwenft.train.module import label_loss

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def answers() -> list[str]:
    """MedQuAD answers that use two real drug names Qwen splits (warfarin, metformin), one paragraph each."""
    path = DATA / "medquad.jsonl.gz"
    if not path.exists():
        pytest.skip("../shared/data not present")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line)["answer"] for line in f]
    picked = [" ".join(a.split()) for a in rows if "warfarin" in a or "metformin" in a]
    assert len(picked) >= 40
    return picked[:40]


@pytest.fixture(scope="module")
def tok():
    return qwen25_tokenizer()


def _cfg(**over) -> OmegaConf:
    return OmegaConf.merge(compose("train", ["data=text", "data.train_path=unused"]).data, over)


# ------------------------------------------------------------------------------------------------ reading


def test_txt_documents_by_line_paragraph_or_whole_file_with_their_lines(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("First note on warfarin.\n\nSecond, line one\r\nsecond, line two\n  \n\nThird.\n", encoding="utf-8")
    by = {u: load_records(p, text_unit=u) for u in ("line", "paragraph", "document")}
    assert all(r.schema == "text" for r in by.values())
    assert [r["text"] for r in by["line"].records] == ["First note on warfarin.", "Second, line one",
                                                       "second, line two", "Third."]
    assert [r["text"] for r in by["paragraph"].records] == ["First note on warfarin.",
                                                            "Second, line one\nsecond, line two", "Third."]
    assert [r["text"] for r in by["document"].records] == [
        "First note on warfarin.\n\nSecond, line one\nsecond, line two\n  \n\nThird."]
    assert read_texts(p, unit="paragraph") == [r["text"] for r in by["paragraph"].records]  # discover / metric


def test_a_text_column_in_every_format(tmp_path, answers):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": i, "text": a} for i, a in enumerate(answers[:5])]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with (tmp_path / "a.csv").open("w", encoding="utf-8", newline="") as f:
        import csv

        w = csv.DictWriter(f, ["id", "text"])
        w.writeheader()
        w.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"body": a}) + "\n" for a in answers[:5]), encoding="utf-8")
    for name in ("a.jsonl", "a.csv", "a.parquet", "saved"):
        got = load_records(tmp_path / name)
        assert got.schema == "text" and [r["text"] for r in got.records] == answers[:5], name
    mapped = load_records(tmp_path / "b.jsonl", columns={"text": "body"})
    assert [r["text"] for r in mapped.records] == answers[:5]


def test_bad_raw_text_is_one_line_naming_file_and_line(tmp_path):
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": "  "}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"blank.jsonl:2: empty column 'text'"):
        load_records(blank)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("ok\nNa\xefve note\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.txt:2: not valid UTF-8"):
        load_records(latin)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="no records"):
        load_records(empty)
    with pytest.raises(UserError, match="text_unit='sentence'"):
        load_records(latin, text_unit="sentence")
    with pytest.raises(UserError, match="raw text"):
        load_records(empty, schema="prompt_completion")


# ---------------------------------------------------------------------------------------- tokens and windows


def test_every_token_is_trained_and_each_document_ends_with_endoftext(tok, answers):
    ex = encode_text(tok, answers[0])
    eos = tok.convert_tokens_to_ids(TEXT_EOS)
    assert ex["input_ids"][-1] == eos and ex["input_ids"][:-1] == tok(answers[0], add_special_tokens=False).input_ids
    assert ex["labels"] == ex["input_ids"]
    windows = text_windows(ex, 64)
    assert [len(w["input_ids"]) for w in windows[:-1]] == [64] * (len(windows) - 1)
    assert sum((w["input_ids"] for w in windows), []) == ex["input_ids"]  # nothing lost, nothing repeated


def test_long_documents_become_counted_windows_not_truncated(tmp_path, tok, answers):
    path = tmp_path / "train.txt"
    path.write_text("\n".join(answers) + "\n", encoding="utf-8")
    cfg = _cfg(max_length=64)
    prepared = prepare(load_records(path), tok, True, cfg, "decomposition")
    lengths = [len(tok(a, add_special_tokens=False).input_ids) + 1 for a in answers]
    assert prepared.stats["documents"] == len(answers)
    assert prepared.stats["windows"] == len(prepared.examples) == sum(math.ceil(n / 64) for n in lengths)
    assert prepared.stats["windowed"] == sum(n > 64 for n in lengths) > 0
    assert prepared.stats["tokens"] == sum(lengths)  # every token of every document is in some window
    assert prepared.overlong == prepared.dropped == 0
    assert all(e["labels"] == e["input_ids"] for e in prepared.examples)
    assert len({e["index"] for e in prepared.examples}) == len(prepared.examples)
    assert prepared.texts == answers


def test_packed_by_default_and_the_loss_covers_every_token_but_each_windows_first(tmp_path, tok, answers):
    path = tmp_path / "train.txt"
    path.write_text("\n".join(answers[:8]) + "\n", encoding="utf-8")
    cfg = _cfg(max_length=48)
    prepared = prepare(load_records(path), tok, True, cfg, "decomposition")
    data = TrainData(prepared, None, batch_size=4, pad_id=tok.pad_token_id, seed=0, packing=cfg.packing)
    auto = TrainData(prepared, None, batch_size=4, pad_id=tok.pad_token_id, seed=0, packing="auto")
    assert data.packing is True and auto.packing is True
    chosen = prepared.examples[:4]
    batch = collate_packed(chosen)
    assert "attention_mask" not in batch and batch["input_ids"].shape[1] == sum(len(e["input_ids"]) for e in chosen)
    loaded = tiny()
    _, n = label_loss(loaded.model, batch)
    # next-token loss on every token of every window; a window's first token has no context in its row
    assert n == sum(len(e["input_ids"]) for e in chosen) - len(chosen)
    assert int((batch["labels"] == IGNORE).sum()) == len(chosen)


def test_instruction_only_data_still_groups_by_length_with_auto(tok):
    from qwenft.data.datamodule import DEMO_DIR

    cfg = OmegaConf.merge(OmegaConf.load(conf_dir() / "data" / "demo.yaml"), {"packing": "auto"})
    prepared = prepare(load_records(DEMO_DIR / "train.jsonl"), tok, True, cfg, "decomposition")
    assert TrainData(prepared, None, batch_size=4, pad_id=0, seed=0, packing="auto").packing is False
    from qwenft.config import compose
    from qwenft.validation import problems  # a bad value is the config's problem, refused before any data is read

    found = problems(compose("train", ["model=tiny", "tokenizer=none", "data.packing=yes"]), "train")
    assert found == ["data.packing='yes': must be true, false or auto"]


# ------------------------------------------------------------------------------------------------- mixed runs


def test_mixed_instruction_and_raw_text_in_one_split(tmp_path, tok, answers):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"prompt": f"What is drug {i}?", "completion": a}) + "\n"
                          for i, a in enumerate(answers[:3])), encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("\n".join(answers[3:8]) + "\n", encoding="utf-8")
    cfg = compose("train", ["data=files", f"data.train_path={qa}", f"data.text_path={notes}",
                            "data.max_length=4096"]).data
    splits = load_splits(cfg)
    train = splits["train"]
    assert train.schema == "prompt_completion+text" and len(train.records) == 8
    prepared = prepare(train, tok, True, cfg, "decomposition")
    instr = [e for e in prepared.examples if IGNORE in e["labels"]]
    text = [e for e in prepared.examples if IGNORE not in e["labels"]]
    assert len(instr) == 3 and len(text) == 5 == prepared.stats["documents"]
    assert split_texts(train, "decomposition") == answers[:8]  # tokenizer.discover reads both kinds
    first_hash = train.sha256
    notes.write_text("\n".join(answers[3:9]) + "\n", encoding="utf-8")
    assert load_splits(cfg)["train"].sha256 != first_hash  # a resume check sees a change in the text file too
    with pytest.raises(UserError, match="data.text_path is set but data.train_path is not"):
        load_splits(OmegaConf.merge(OmegaConf.load(conf_dir() / "data" / "demo.yaml"), {"text_path": str(notes)}))


def test_new_word_metric_scores_long_documents_in_windows(tok, answers):
    loaded = tiny()
    long_doc = " ".join(answers[:6]) + " Then warfarin again."
    assert len(tok(long_doc).input_ids) > 3 * 64
    full = new_word_nll(loaded.model, tok, [long_doc], ["warfarin", "metformin"], max_length=64)
    assert full.text_bytes == len(long_doc.encode())  # all of it, not the first 63 tokens
    assert full.occurrences == long_doc.count("warfarin") + long_doc.count("metformin")
    one_window = new_word_nll(loaded.model, tok, [long_doc[:200]], ["warfarin"], max_length=4096)
    head = new_word_nll(loaded.model, tok, [long_doc[:200]], ["warfarin"], max_length=64)
    assert math.isclose(one_window.text_nll, head.text_nll, rel_tol=1e-4)  # short text: one window either way


def test_the_text_data_option():
    demo = OmegaConf.load(conf_dir() / "data" / "demo.yaml")
    cfg = compose("train", ["data=text", "data.train_path=x.txt"])
    assert set(cfg.data) - {"_required_"} == set(demo) and list(cfg.data._required_) == ["train_path"]
    assert cfg.data.schema == "text" and cfg.data.packing is True and cfg.data.text_unit == "line"
    assert compose("train", []).data.packing == "auto"


# ---------------------------------------------------------------------------------------------- through the CLI


def _tiny_args() -> list[str]:
    return [a for a in TINY if not a.startswith("tokenizer.words_file")]


def test_cli_trains_a_tiny_model_on_raw_medquad_text(tmp_path, tok, answers):
    (tmp_path / "train.txt").write_text("\n".join(answers[:24]) + "\n", encoding="utf-8")
    (tmp_path / "val.txt").write_text("\n".join(answers[24:28]) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    out = qwenft("train", *_tiny_args(), "data=text", f"data.train_path={tmp_path}/train.txt",
                 f"data.val_path={tmp_path}/val.txt", "tokenizer.discover={min_count: 3, max_words: 6}",
                 "trainer.max_steps=2", "trainer.val_check_interval=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "run_info.json").read_text())
    from transformers import AutoTokenizer

    extended = AutoTokenizer.from_pretrained(run / "merged")  # windows are counted in the extended tokens
    lengths = [len(extended(a, add_special_tokens=False).input_ids) + 1 for a in answers[:24]]
    assert sum(lengths) < sum(len(tok(a, add_special_tokens=False).input_ids) + 1 for a in answers[:24])
    assert info["data"]["train"]["documents"] == 24
    assert info["data"]["train"]["windows"] == sum(math.ceil(n / 128) for n in lengths)  # TINY: max_length=128
    assert metrics["data/train_windowed"] == sum(n > 128 for n in lengths) > 0
    assert metrics["data/train_pad_fraction_epoch"] == 0.0  # packed by default
    manifest = json.loads((run / "merged" / "qwenft_vocab.json").read_text())
    assert "warfarin" in manifest["words"]  # tokenizer.discover read the raw text
    assert "warfarin  ' warfarin'  added" in out.stdout + out.stderr  # the per-form report is in the run's log
    assert math.isfinite(metrics["val/new_word_nll"]) and metrics["global_step"] == 2


def test_cli_mixes_instruction_data_and_raw_text(tmp_path, answers):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"prompt": f"Tell me about drug {i}.", "completion": a[:300]}) + "\n"
                          for i, a in enumerate(answers[:8])), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("\n".join(answers[8:16]) + "\n", encoding="utf-8")
    run = tmp_path / "run"
    out = qwenft("train", *_tiny_args(), "data=files", f"data.train_path={qa}", f"data.text_path={tmp_path}/notes.txt",
                 "tokenizer.words=[warfarin,metformin]", "trainer.max_steps=1", "validate_before=false",
                 "export.enabled=false", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads((run / "run_info.json").read_text())
    assert info["data"]["train"]["records"] == 16 and info["data"]["train"]["documents"] == 8
    assert "notes.txt: 8 raw-text documents" in out.stdout + out.stderr  # counted in the log
    bad = qwenft("train", *_tiny_args(), "data.text_path=notes.txt", f"hydra.run.dir={tmp_path}/bad", cwd=tmp_path)
    assert bad.returncode == 2 and "data.text_path is set but data.train_path is not" in bad.stdout + bad.stderr
