"""Fuzzing load_records: whatever the bytes, the result is valid canonical records or one DataError line.

Researchers' exports are messy in ways nobody lists in advance; the property that matters is that nothing but a
``DataError`` naming the file ever escapes (no KeyError, UnicodeDecodeError, JSONDecodeError or traceback).
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwenft.data.io import ROLES, LoadResult, load_records
from qwenft.errors import DataError

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# st.text() never yields surrogates, so lone ones (invalid) and a split pair (valid once JSON joins it) are listed.
SURROGATES = ["\ud800", "a\udfffb", "\ud83d\ude00", "\udc00\ud800"]
texts = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "\n\t", "ok", "\u00e9t\u00e9", "\U0001f600",
                                                         "\u2028", "\x85", *SURROGATES]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), texts)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(texts, inner, max_size=3)), max_leaves=8)
keys = st.one_of(st.sampled_from(["prompt", "completion", "messages", "scenario", "questions", "summary",
                                  "answers", "id", "new_words", "gold_docs", "q", "a"]), texts)
messages = st.lists(st.fixed_dictionaries({"role": st.one_of(st.sampled_from([*ROLES, "bot"]), json_values),
                                           "content": st.one_of(texts, json_values)}), max_size=4)
records = st.one_of(
    st.fixed_dictionaries({"prompt": st.one_of(texts, json_values), "completion": st.one_of(texts, json_values)}),
    st.fixed_dictionaries({"messages": st.one_of(messages, json_values)}),
    st.fixed_dictionaries({"scenario": texts, "questions": st.lists(texts, max_size=3), "summary": texts,
                           "answers": st.one_of(st.lists(texts, max_size=3), json_values)},
                          optional={"id": json_values, "new_words": json_values, "gold_docs": json_values}),
    st.dictionaries(keys, json_values, max_size=5),
)


@st.composite
def jsonl_line(draw) -> bytes:
    """A line that is valid, subtly broken (truncated, bad UTF-8, not an object) or blank."""
    kind = draw(st.sampled_from(["record", "record", "record", "value", "truncated", "bad_utf8", "blank", "junk"]))
    if kind == "blank":
        return draw(st.sampled_from([b"", b"  ", b"\t", b"\r"]))
    if kind == "junk":
        return draw(st.binary(max_size=20)).replace(b"\n", b"")
    raw = json.dumps(draw(records if kind != "value" else json_values),
                     ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == "truncated":
        return raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    if kind == "bad_utf8":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + raw[at:]
    return raw


def _assert_canonical(res: LoadResult) -> None:
    assert res.records and len(res.sha256) == 64
    for r in res.records:
        if res.schema == "prompt_completion":
            fields = [r["prompt"], r["completion"]]
        elif res.schema == "messages":
            assert r["messages"][-1]["role"] == "assistant"
            assert all(m["role"] in ROLES for m in r["messages"])
            fields = [m["content"] for m in r["messages"]]
        else:
            assert res.schema == "clinical" and len(r["questions"]) == len(r["answers"]) > 0
            fields = [r["scenario"], r["summary"], *r["questions"], *r["answers"]]
        assert all(isinstance(f, str) and f.strip() for f in fields), r
        json.dumps(r).encode("utf-8")  # records are real Unicode that later stages can write out


def _check(data: bytes, suffix: str, **kw) -> LoadResult | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            res = load_records(path, **kw)
        except DataError as err:
            msg = str(err)
            assert msg.startswith(str(path)) and len(msg.splitlines()) == 1, msg
            editor_lines = len(re.split(rb"\r\n|\r|\n", data))  # CSV, like editors, also breaks at a bare \r
            assert err.line is None or 1 <= err.line <= editor_lines, (err.line, msg)
            return None
        _assert_canonical(res)
        return res


@FUZZ
@given(lines=st.lists(jsonl_line(), max_size=8), skip=st.booleans(),
       schema=st.sampled_from(["auto", "auto", "prompt_completion", "messages", "clinical"]),
       newline=st.sampled_from([b"\n", b"\r\n"]))
def test_fuzz_near_valid_jsonl(lines, skip, schema, newline):
    data = newline.join(lines)
    res = _check(data, ".jsonl", skip_bad_rows=skip, schema=schema)
    if res is not None and skip:  # every non-blank line is either a record or a skipped row, in order
        body = data.removeprefix(b"\xef\xbb\xbf")  # a leading BOM is not a row
        nonblank = sum(1 for raw in body.split(b"\n") if raw.strip())
        assert len(res.records) + len(res.skipped) == nonblank
        assert [n for n, _ in res.skipped] == sorted({n for n, _ in res.skipped})


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), st.lists(jsonl_line(), max_size=4).map(b"\n".join)),
       suffix=st.sampled_from([".jsonl", ".json", ".csv"]), skip=st.booleans(),
       columns=st.one_of(st.none(), st.just({"prompt": "q", "completion": "a"})))
def test_fuzz_arbitrary_bytes(data, suffix, skip, columns):
    _check(data, suffix, skip_bad_rows=skip, columns=columns)


@FUZZ
@given(rows=st.lists(st.fixed_dictionaries({"prompt": st.text(min_size=1).filter(str.strip),
                                            "completion": st.text(min_size=1).filter(str.strip)}),
                     min_size=1, max_size=5),
       as_array=st.booleans())
def test_fuzz_valid_round_trip(rows, as_array):
    """Valid records come back unchanged, whatever Unicode they hold (surrogates excluded: not valid UTF-8)."""
    rows = [r for r in rows if all(not any(0xD800 <= ord(c) <= 0xDFFF for c in v) for v in r.values())]
    if not rows:
        return
    data = (json.dumps(rows, indent=1) if as_array else "\n".join(json.dumps(r) for r in rows)).encode()
    res = _check(data, ".json" if as_array else ".jsonl")
    assert res is not None and res.records == rows and res.schema == "prompt_completion"


def _serialise(rows: list[dict], form: str) -> bytes:
    """Valid bytes in one of the non-JSONL forms researchers hand in."""
    if form == "array":
        text = json.dumps(rows, indent=2, ensure_ascii=False)
    elif form == "object":
        text = json.dumps(rows[0], indent=2, ensure_ascii=False)
    else:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["prompt", "completion"])
        writer.writerows([[str(r.get("prompt")), str(r.get("completion"))] for r in rows])
        text = buf.getvalue()
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(rows=st.lists(records, min_size=1, max_size=4), form=st.sampled_from(["array", "object", "csv"]),
       cut=st.tuples(st.integers(0, 400), st.integers(0, 6)), junk=st.binary(max_size=4), skip=st.booleans())
def test_fuzz_corrupted_json_and_csv(rows, form, cut, junk, skip):
    """Valid pretty-printed JSON / arrays / CSV with a few bytes cut out and junk put in at a random place."""
    data = _serialise(rows, form)
    at = min(cut[0], len(data))
    data = data[:at] + junk + data[at + cut[1]:]
    _check(data, ".csv" if form == "csv" else ".json", skip_bad_rows=skip)
