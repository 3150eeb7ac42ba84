"""The offline Qwen2.5 tokenizer gives Qwen2.5's ids: checked against two independent derivations."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from qwenft.model.qwen_tokenizer import (
    QWEN2_SPLIT_REGEX,
    QWEN25_ADDED_TOKENS,
    qwen25_tokenizer,
    tiktoken_file,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def medquad_texts(limit: int | None = None) -> list[str]:
    path = DATA / "medquad.jsonl.gz"
    if not path.exists():
        pytest.skip("../shared/data/medquad.jsonl.gz not present")
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out.append(row["question"] + "\n" + row["answer"])
            if limit and len(out) >= limit:
                break
    return out


@pytest.fixture(scope="module")
def tok():
    return qwen25_tokenizer()


def test_special_tokens_and_sizes(tok):
    assert len(tok) == 151665
    for offset, (content, _special) in enumerate(QWEN25_ADDED_TOKENS):
        assert tok.convert_tokens_to_ids(content) == 151643 + offset
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == 151643
    assert qwen25_tokenizer(instruct=False).eos_token == "<|endoftext|>"
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are Qwen") and text.endswith("<|im_start|>assistant\n")


def test_matches_tiktoken_on_all_medquad(tok):
    """tiktoken with the same ranks and regex is how Qwen itself tokenizes (its reference implementation)."""
    import tiktoken

    ranks = {}
    for line in tiktoken_file().read_text().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    specials = {c: 151643 + i for i, (c, _) in enumerate(QWEN25_ADDED_TOKENS)}
    enc = tiktoken.Encoding("qwen2.5", pat_str=QWEN2_SPLIT_REGEX, mergeable_ranks=ranks, special_tokens=specials)
    texts = medquad_texts()
    ours = tok(texts, add_special_tokens=False).input_ids
    theirs = enc.encode_ordinary_batch(texts)
    mismatched = sum(a != b for a, b in zip(ours, theirs, strict=True))
    assert len(texts) == 16407
    assert mismatched == 0


@pytest.mark.slow
def test_matches_gguf_token_list_and_merges(tok, offline_gguf):
    """The GGUF carries Qwen2.5's own token list and merges; transformers rebuilds a tokenizer from them."""
    from transformers import AutoTokenizer

    gguf_tok = AutoTokenizer.from_pretrained(str(offline_gguf.parent), gguf_file=offline_gguf.name)
    texts = medquad_texts()
    ours = tok(texts, add_special_tokens=False).input_ids
    theirs = gguf_tok(texts, add_special_tokens=False).input_ids
    assert sum(a != b for a, b in zip(ours, theirs, strict=True)) == 0
    for content, _ in QWEN25_ADDED_TOKENS:
        assert gguf_tok.convert_tokens_to_ids(content) == tok.convert_tokens_to_ids(content)


@pytest.fixture(scope="module")
def offline_gguf(tmp_path_factory):
    from offline_assets import gguf_path

    return gguf_path(tmp_path_factory)
