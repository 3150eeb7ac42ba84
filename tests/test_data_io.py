"""load_records: every bad input is one DataError line naming file and editor line; good input round-trips."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from pathlib import Path

import pytest

from qwenft.data.io import LoadResult, load_records
from qwenft.errors import DataError, UserError

PC = {"prompt": "What is X?", "completion": "X is Y."}
MSG = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                    {"role": "assistant", "content": "Hello."}]}
CLIN = {"id": "v1", "scenario": "A 40-year-old man.", "questions": ["Diagnosis?", "Treatment?"],
        "summary": "Man, 40.", "answers": ["Flu.", "Rest."], "new_words": ["Zorbitis"], "gold_docs": [["d-1"], ["d-2"]]}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def jsonl(tmp_path: Path, *lines: object, name: str = "d.jsonl") -> Path:
    """A JSONL file; str lines are written verbatim, anything else as JSON."""
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return p


def error(path: Path, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        load_records(path, **kw)
    err = info.value
    assert "\n" not in str(err) and str(err).startswith(str(path)), str(err)
    return err


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ('{"prompt": "a", "completion": }', "malformed JSON"),
        ('[1, 2]', "expected a JSON object, got array"),
        ('"just a string"', "expected a JSON object, got string"),
        ({"prompt": "a"}, "missing column 'completion'"),
        ({"prompt": "a", "completion": 3}, "column 'completion' must be a string, got number"),
        ({"prompt": "   ", "completion": "b"}, "empty column 'prompt'"),
        ({"prompt": "a", "completion": "\n\t"}, "empty column 'completion'"),
        ({"prompt": None, "completion": "b"}, "must be a string, got null"),
        ('{"prompt": "\\ud800", "completion": "b"}', "unpaired surrogate"),
        ('{"prompt": "a", "completion": ' + "1" * 5000 + "}", "malformed JSON"),
        ("[" * 100000 + "]" * 100000, "malformed JSON"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, bad, needle):
    p = jsonl(tmp_path, PC, "", PC, bad, PC)  # blank line 2 is skipped but still counted
    err = error(p)
    assert err.line == 4 and str(err).startswith(f"{p}:4: ")
    assert needle in str(err)


def test_missing_column_lists_available_keys(tmp_path):
    err = error(jsonl(tmp_path, {"prompt": "a", "answer": "b"}))
    assert "missing column 'completion'" in str(err) and "available keys: ['answer', 'prompt']" in str(err)


def test_invalid_utf8_reports_line_and_byte_offset(tmp_path):
    p = tmp_path / "d.jsonl"
    good = json.dumps(PC).encode() + b"\n"
    p.write_bytes(good + b'{"prompt": "ab\xff", "completion": "c"}\n' + good)
    err = error(p)
    assert err.line == 2
    assert "not valid UTF-8" in str(err) and "0xff" in str(err) and "byte offset 14 of the line" in str(err)
    assert f"offset {len(good) + 14} in the file" in str(err)


def test_malformed_json_message_carries_parser_reason(tmp_path):
    err = error(jsonl(tmp_path, '{"prompt": "a" "completion": "b"}'))
    assert err.line == 1 and "malformed JSON: Expecting ',' delimiter" in str(err)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file_is_no_records(tmp_path, content):
    p = tmp_path / "d.jsonl"
    p.write_bytes(content)
    assert error(p).problem == "no records"


def test_unknown_extension_lists_supported(tmp_path):
    p = tmp_path / "d.tsv"  # (.txt is raw text since issue 15: tests/test_raw_text.py)
    p.write_text(json.dumps(PC))
    err = error(p)
    assert ".jsonl" in str(err) and ".csv" in str(err) and ".parquet" in str(err) and "'.tsv'" in str(err)
    assert ".txt" in str(err)


def test_missing_file(tmp_path):
    assert "file not found" in str(error(tmp_path / "nope.jsonl"))


def test_max_chars(tmp_path):
    p = jsonl(tmp_path, PC, {"prompt": "x" * 50, "completion": "y"})
    err = error(p, max_chars=20)
    assert err.line == 2 and err.problem == "prompt is 50 chars, longer than the context allows (max_chars=20)"
    assert len(load_records(p, max_chars=50).records) == 2


@pytest.mark.parametrize(
    ("msgs", "needle"),
    [
        ([], "non-empty array"),
        ("hi", "non-empty array"),
        ([{"role": "user", "content": "a"}], "last message is from the user"),
        ([{"role": "assistant", "content": "a"}], "no user turn"),
        ([{"role": "bot", "content": "a"}, {"role": "assistant", "content": "b"}], "role 'bot'"),
        ([{"role": "user", "content": 1}, {"role": "assistant", "content": "b"}], "content must be a string"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": " "}], "messages[1] (assistant)"),
        (["user: hi"], "messages[0] must be an object"),
    ],
)
def test_bad_messages(tmp_path, msgs, needle):
    err = error(jsonl(tmp_path, MSG, {"messages": msgs}))
    assert err.line == 2 and needle in str(err)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"scenario": ""}, "empty column 'scenario'"),
        ({"questions": []}, "'questions' is an empty array"),
        ({"questions": "Diagnosis?"}, "'questions' must be an array"),
        ({"questions": ["Diagnosis?", " "]}, "empty column 'questions'[1]"),
        ({"answers": ["Flu.", ""]}, "empty column 'answers'[1]"),
        ({"answers": ["Flu."]}, "2 questions but 1 answers"),
        ({"summary": 5}, "'summary' must be a string"),
        ({"new_words": "Zorbitis"}, "'new_words' must be an array"),
        ({"id": 1.5}, "'id' must be a string or integer"),
    ],
)
def test_bad_clinical(tmp_path, change, needle):
    err = error(jsonl(tmp_path, CLIN, CLIN, {**CLIN, **change}))
    assert err.line == 3 and needle in str(err)


def test_auto_schema_fixed_by_first_record(tmp_path):
    err = error(jsonl(tmp_path, PC, MSG))
    assert err.line == 2 and "missing column 'prompt'" in str(err)


def test_unknown_keys_cannot_tell_schema(tmp_path):
    err = error(jsonl(tmp_path, {"Question": "a", "Answer": "b"}))
    assert "cannot tell the schema" in str(err) and "'Answer', 'Question'" in str(err)


def test_explicit_schema_is_enforced(tmp_path):
    err = error(jsonl(tmp_path, PC), schema="messages")
    assert "missing column 'messages'" in str(err)


def test_schema_none_means_auto(tmp_path):
    assert load_records(jsonl(tmp_path, PC), schema=None).schema == "prompt_completion"


def test_config_mistakes_are_user_errors(tmp_path):
    p = jsonl(tmp_path, PC)
    for kw in ({"schema": "chat"}, {"columns": {"question": "q"}}, {"columns": {"prompt": 3}}, {"max_chars": 0}):
        with pytest.raises(UserError):
            load_records(p, **kw)


# ------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("row", "schema"), [(PC, "prompt_completion"), (MSG, "messages"), (CLIN, "clinical")])
def test_jsonl_round_trip(tmp_path, row, schema):
    p = jsonl(tmp_path, row, row)
    res = load_records(p)
    assert isinstance(res, LoadResult)
    assert res.schema == schema and res.records == [row, row] and res.skipped == [] and res.path == str(p)
    assert res.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert load_records(p, schema=schema).records == [row, row]


def test_extra_keys_dropped_and_id_kept(tmp_path):
    res = load_records(jsonl(tmp_path, {**PC, "id": 7, "source": "x"}))
    assert res.records == [{**PC, "id": 7}]


def test_json_array_and_single_object(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([PC, PC, PC], indent=2))
    assert load_records(p).records == [PC] * 3
    p.write_text(json.dumps(PC, indent=2))
    assert load_records(p).records == [PC]
    p.write_text(json.dumps(PC) + "\n" + json.dumps(PC) + "\n")  # JSON lines under .json
    assert load_records(p).records == [PC] * 2


def test_json_array_bad_element_line(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps([PC, PC, {"prompt": "a", "completion": ""}], indent=2))
    err = error(p)
    assert err.line == 10 and "empty column 'completion'" in str(err)  # 4 lines per pretty-printed element
    p.write_text('[\n{"prompt": "a", "completion": "b"},\n{"prompt": "a",, }\n]')
    assert error(p).line == 3
    p.write_text('[\n{"prompt": "a", "completion": "b"}\n')
    assert "ends inside the array" in str(error(p))


def test_pretty_printed_object_error_at_its_line(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('{\n  "prompt": "a",\n  "completion": "b"\n  "source": "x"\n}\n')
    err = error(p)
    assert err.line == 4 and "malformed JSON: Expecting ',' delimiter" in str(err)
    p.write_text('{\n  "prompt": "a",\n  "completion": "b"\n}\n{\n  "prompt": "c"\n}\n')
    assert error(p).line == 5 and "one object per line" in str(error(p))


def test_bare_carriage_return_is_explained(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(json.dumps(PC).encode() + b"\r" + json.dumps(PC).encode() + b"\n")
    err = error(p)
    assert err.line == 1 and "bare carriage return" in str(err)


def test_json_array_invalid_utf8(tmp_path):
    p = tmp_path / "d.json"
    p.write_bytes(b'[\n{"prompt": "a", "completion": "b"},\n{"prompt": "\xc3(", "completion": "b"}]')
    err = error(p)
    assert err.line == 3 and "byte offset 12 of the line" in str(err)


def test_bom_and_crlf_accepted(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(PC).encode() + b"\r\n" + json.dumps(PC).encode() + b"\r\n")
    assert load_records(p).records == [PC, PC]


def test_csv_round_trip_and_lines(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('prompt,completion\nWhat is 2+2?,4\n\n"multi\nline",ok\n"a",""\n', encoding="utf-8")
    err = error(p)
    assert err.line == 6 and "empty column 'completion'" in str(err)  # header is 1, the quoted record spans 4-5
    res = load_records(p, skip_bad_rows=True)
    assert res.records == [{"prompt": "What is 2+2?", "completion": "4"}, {"prompt": "multi\nline", "completion": "ok"}]
    assert res.skipped == [(6, "empty column 'completion' (blank or whitespace only)")]


def test_csv_bad_rows(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("prompt,completion\na,b\na,b,c\n")
    assert error(p).line == 3 and "3 fields but the header has 2" in str(error(p))
    p.write_bytes(b"prompt,completion\na,b\n\xff,b\n")
    assert error(p).line == 3 and "not valid UTF-8" in str(error(p))
    p.write_text("prompt,completion\n")
    assert error(p).problem == "no records"


@pytest.mark.parametrize("sep", [";", "\t"])
def test_csv_wrong_separator_is_named(tmp_path, sep):
    p = tmp_path / "d.csv"
    p.write_text(f"prompt{sep}completion\na{sep}b\n")
    err = error(p)
    assert err.line == 1 and f"looks {sep!r}-separated" in str(err)


def test_csv_messages_and_clinical_as_json_text(tmp_path):
    p = tmp_path / "d.csv"
    with p.open("w", newline="") as fh:
        csv.writer(fh).writerows([["messages"], [json.dumps(MSG["messages"])]])
    assert load_records(p).records == [MSG]
    p = tmp_path / "c.csv"
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["scenario", "questions", "summary", "answers", "id", "new_words", "gold_docs"])
        w.writerow([CLIN["scenario"], json.dumps(CLIN["questions"]), CLIN["summary"], json.dumps(CLIN["answers"]),
                    "v1", json.dumps(CLIN["new_words"]), json.dumps(CLIN["gold_docs"])])
        w.writerow([CLIN["scenario"], "[not json", CLIN["summary"], json.dumps(CLIN["answers"]), "v2", "", ""])
    res = load_records(p, skip_bad_rows=True)
    assert res.schema == "clinical" and res.records == [CLIN]
    assert res.skipped[0][0] == 3 and "must hold a JSON array in CSV" in res.skipped[0][1]


@pytest.mark.parametrize(("row", "schema"), [(PC, "prompt_completion"), (MSG, "messages"), (CLIN, "clinical")])
def test_parquet_round_trip(tmp_path, row, schema):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([row, row]), p)
    res = load_records(p)
    assert res.schema == schema and res.records == [row, row]
    assert res.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


def test_parquet_bad_row_and_bad_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([PC, PC, {"prompt": "a", "completion": " "}]), p)
    assert error(p).line == 3
    p.write_bytes(b"not parquet at all")
    assert "cannot read Parquet" in str(error(p))


@pytest.mark.parametrize(("row", "schema"), [(PC, "prompt_completion"), (MSG, "messages"), (CLIN, "clinical")])
def test_saved_dataset_round_trip(tmp_path, row, schema):
    import datasets

    d = tmp_path / "ds"
    datasets.Dataset.from_list([row, row, row]).save_to_disk(str(d))
    res = load_records(d)
    assert res.schema == schema and res.records == [row] * 3 and len(res.sha256) == 64
    datasets.DatasetDict({"train": datasets.Dataset.from_list([row])}).save_to_disk(str(tmp_path / "dd"))
    assert load_records(tmp_path / "dd").records == [row]


def test_saved_dataset_bad_row_and_bad_folder(tmp_path):
    import datasets

    d = tmp_path / "ds"
    datasets.Dataset.from_list([PC, {"prompt": "", "completion": "b"}]).save_to_disk(str(d))
    assert error(d).line == 2
    (tmp_path / "empty").mkdir()
    assert "save_to_disk" in str(error(tmp_path / "empty"))


def test_folder_sha_changes_with_content(tmp_path):
    import datasets

    datasets.Dataset.from_list([PC]).save_to_disk(str(tmp_path / "a"))
    datasets.Dataset.from_list([{**PC, "completion": "other"}]).save_to_disk(str(tmp_path / "b"))
    assert load_records(tmp_path / "a").sha256 != load_records(tmp_path / "b").sha256


# ------------------------------------------------------------------------------------- mapping, skipping


def test_column_mapping(tmp_path):
    p = jsonl(tmp_path, {"question": "q?", "answer": "a.", "prompt": "ignored"})
    res = load_records(p, columns={"prompt": "question", "completion": "answer"})
    assert res.schema == "prompt_completion" and res.records == [{"prompt": "q?", "completion": "a."}]
    err = error(jsonl(tmp_path, {"question": "q?", "prompt": "p"}, name="e.jsonl"),
                columns={"prompt": "question", "completion": "answer"})
    assert "missing column 'answer' (mapped to 'completion')" in str(err)
    err = error(jsonl(tmp_path, {"question": " ", "answer": "a"}, name="f.jsonl"),
                columns={"prompt": "question", "completion": "answer"})
    assert "empty column 'question' (mapped to 'prompt')" in str(err)


def test_skip_bad_rows(tmp_path, caplog):
    p = jsonl(tmp_path, PC, "{oops", {"prompt": "a"}, "", PC, b"\xff".decode("latin-1"), PC)
    raw = p.read_bytes().replace("ÿ".encode(), b"\xff")
    p.write_bytes(raw)
    with caplog.at_level(logging.INFO, logger="qwenft.data.io"):
        res = load_records(p, skip_bad_rows=True)
    assert res.records == [PC] * 3
    assert [n for n, _ in res.skipped] == [2, 3, 6]
    assert "malformed JSON" in res.skipped[0][1] and "missing column" in res.skipped[1][1]
    assert "not valid UTF-8" in res.skipped[2][1]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3 bad row(s) (lines 2, 3, 6)" in warnings[0].getMessage()
    assert sum(r.levelno == logging.INFO for r in caplog.records) == 3


def test_skip_bad_rows_all_bad_is_still_an_error(tmp_path):
    err = error(jsonl(tmp_path, "{oops", {"prompt": ""}), skip_bad_rows=True)
    assert err.problem == "no records (2 bad rows skipped)"


def test_skip_bad_rows_auto_schema_from_first_valid(tmp_path):
    res = load_records(jsonl(tmp_path, {"x": 1}, MSG, PC), skip_bad_rows=True)
    assert res.schema == "messages" and res.records == [MSG] and [n for n, _ in res.skipped] == [1, 3]


def test_cli_style_message_is_one_line(tmp_path):
    err = error(jsonl(tmp_path, {"prompt": "line1\nline2", "completion": 5, "weird\nkey": 1}))
    assert str(err).count("\n") == 0 and str(err) == f"{err.path}:1: {err.problem}"


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (SHARED / "kqa_questions_w_answers.jsonl").exists(), reason="shared K-QA data absent")
def test_kqa_real_data():
    path = SHARED / "kqa_questions_w_answers.jsonl"
    res = load_records(path, columns={"prompt": "Question", "completion": "Free_form_answer"})
    assert len(res.records) == 201 and res.schema == "prompt_completion" and not res.skipped
    assert all(r["prompt"].strip() and r["completion"].strip() for r in res.records)
    with pytest.raises(DataError, match=r"kqa_questions_w_answers\.jsonl:1: cannot tell the schema"):
        load_records(path)


def test_csv_unclosed_quote_is_fatal_with_start_line(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('prompt,completion\na,b\n"never closed,x\nc,d\n')
    err = error(p, skip_bad_rows=True)
    assert err.line == 3 and "quote opened here is never closed" in str(err)


def test_pretty_json_object_error_on_its_line(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('{\n  "prompt": "a",\n  "completion": "b",,\n}\n')
    err = error(p)
    assert err.line == 3 and "malformed JSON" in str(err)
