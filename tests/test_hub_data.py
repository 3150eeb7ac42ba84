"""``data.train_path`` / ``val_path`` / ``test_path`` also take what ``datasets.load_dataset`` reads -- a Hub dataset
id, an ``hf://`` path, a local folder of data files, with ``data.data_files`` -- and its rows go through the same
checks as a local file's. Offline: local folders, and the Hub paths with ``load_dataset`` stood in for."""

from __future__ import annotations

import json

import datasets
import pytest

from qwenft.config import compose
from qwenft.data import io
from qwenft.data.datamodule import load_splits
from qwenft.data.io import hub_source, load_records
from qwenft.errors import DataError, UserError
from qwenft.validation import validate

PC = {"prompt": "What is neurogenix?", "completion": "A drug."}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    write_jsonl(d / "train.jsonl", [PC, {**PC, "completion": "Another."}])
    write_jsonl(d / "validation.jsonl", [{**PC, "completion": "Val."}])
    write_jsonl(d / "test.jsonl", [{**PC, "completion": "Test."}, {**PC, "completion": "Test 2."}])
    return d


def test_hub_ids_and_paths_are_told_from_local_paths(tmp_path):
    assert hub_source("owner/name") and hub_source("hf://datasets/owner/name")
    assert hub_source("hf://datasets/owner/name/data/train.jsonl")
    assert not hub_source("data/train.jsonl") and not hub_source("train.jsonl") and not hub_source("notes.txt")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    assert not hub_source(tmp_path / "a" / "b")


def test_a_local_folder_of_data_files_gives_each_split(folder):
    assert [r["completion"] for r in load_records(folder).records] == ["A drug.", "Another."]
    assert [r["completion"] for r in load_records(folder, split="val").records] == ["Val."]
    test = load_records(folder, split="test")
    assert [r["completion"] for r in test.records] == ["Test.", "Test 2."] and test.schema == "prompt_completion"
    assert len(test.sha256) == 64 and test.sha256 != load_records(folder, split="val").sha256


def test_data_files_name_the_files_of_each_split(tmp_path):
    d = tmp_path / "raw"
    d.mkdir()
    write_jsonl(d / "a.jsonl", [PC])
    write_jsonl(d / "b.jsonl", [{**PC, "completion": "B."}])
    got = load_records(d, split="test", data_files={"train": "a.jsonl", "test": "b.jsonl"})
    assert [r["completion"] for r in got.records] == ["B."]
    with pytest.raises(DataError, match="no val split"):
        load_records(d, split="val", data_files={"train": "a.jsonl", "test": "b.jsonl"})


def test_rows_from_load_dataset_get_the_same_checks(folder):
    write_jsonl(folder / "test.jsonl", [PC, {"prompt": "", "completion": "x"}])
    with pytest.raises(DataError) as err:
        load_records(folder, split="test")
    assert str(err.value).startswith(f"{folder}:2: ") and "\n" not in str(err.value)
    assert len(load_records(folder, split="test", skip_bad_rows=True).records) == 1


def test_train_val_test_paths_from_one_folder(folder):
    cfg = compose("train", ["data=files", f"data.train_path={folder}", f"data.val_path={folder}",
                            f"data.test_path={folder}"])
    splits = load_splits(cfg.data)
    assert {k: len(v.records) for k, v in splits.items()} == {"train": 2, "val": 1, "test": 2}


def test_hub_paths_go_to_load_dataset(monkeypatch):
    calls = []

    def fake(name, data_files=None, **kw):
        calls.append((name, data_files))
        return datasets.DatasetDict({"train": datasets.Dataset.from_list([PC]),
                                     "validation": datasets.Dataset.from_list([{**PC, "completion": "V."}])})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert load_records("owner/name", split="val").records[0]["completion"] == "V."
    assert load_records("hf://datasets/owner/name").path == "hf://datasets/owner/name"
    load_records("hf://datasets/owner/name/data/train.jsonl")
    load_records("owner/name", data_files={"train": "x.jsonl"})
    assert calls == [("owner/name", None), ("owner/name", None), ("json", "hf://datasets/owner/name/data/train.jsonl"),
                     ("owner/name", {"train": "x.jsonl"})]


def test_an_unreachable_hub_dataset_is_one_line(monkeypatch):
    def offline(*a, **kw):
        raise ConnectionError("Couldn't reach 'owner/name' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(io, "hub_source", lambda p: str(p) == "owner/name")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        load_records("owner/name")
    assert str(err.value) == ("owner/name: cannot load with datasets.load_dataset (no such local file or folder "
                              "either): Couldn't reach 'owner/name' on the Hub (LocalEntryNotFoundError)")


def test_data_files_value_is_checked():
    files = "data.data_files={train: a.jsonl, test: [b.jsonl, c.jsonl]}"
    validate(compose("train", ["experiment=demo", files]), "train")
    with pytest.raises(UserError, match="data.data_files"):
        validate(compose("train", ["experiment=demo", "data.data_files=3"]), "train")


def test_a_folder_without_data_files_is_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.bin").write_text("x")
    with pytest.raises(DataError) as err:
        load_records(tmp_path / "d")
    assert str(err.value).startswith(f"{tmp_path / 'd'}: cannot read as a dataset saved with save_to_disk or as data")
