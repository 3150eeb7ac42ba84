"""Knowledge-base loading, BM25 / dense / hybrid retrieval, and their on-disk caches keyed by the KB's hash."""

from __future__ import annotations

import json
import shutil

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from qwenft.config import conf_dir
from qwenft.data.datamodule import DEMO_DIR
from qwenft.errors import DataError
from qwenft.retrieval.bm25 import BM25Retriever
from qwenft.retrieval.dense import DenseRetriever, bundled_minilm_path
from qwenft.retrieval.fusion import rrf
from qwenft.retrieval.hybrid import HybridRetriever
from qwenft.retrieval.kb import load_kb

KB = DEMO_DIR / "kb.jsonl"
DOCS = [json.loads(line) for line in KB.read_text().splitlines()]


def test_kb_validation_names_the_line(tmp_path):
    cases = {
        '{"id": "a", "text": "x"}\n{"id": "b", "text": ': ":2: malformed JSON",
        '{"id": "a", "text": "x"}\n\n{"id": "b"}\n': ":3: each line needs a non-empty string 'text'",
        '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n': ":2: duplicate id 'a'",
        '{"text": "x"}\n': ":1: each line needs an 'id'",
        "\n": ": no documents",
    }
    for i, (content, message) in enumerate(cases.items()):
        path = tmp_path / f"kb{i}.jsonl"
        path.write_text(content)
        with pytest.raises(DataError) as err:
            load_kb(path)
        assert str(err.value).startswith(f"{path}{message}")
    with pytest.raises(DataError, match="knowledge base not found"):
        load_kb(tmp_path / "missing.jsonl")
    kb = load_kb(KB)
    assert len(kb) == len(DOCS) and kb.passage(DOCS[0]["id"]) == f"{DOCS[0]['title']}. {DOCS[0]['text']}"


def test_bm25_finds_invented_terms_and_caches_by_hash(tmp_path):
    drug = next(d for d in DOCS if d["id"].startswith("drug-"))
    bm25 = BM25Retriever(KB, cache_dir=tmp_path)
    assert not bm25.from_cache
    assert bm25.search(f"What are the adverse effects of {drug['title']}?", 3)[0] == drug["id"]
    assert bm25.search("the of and", 3) == [] and bm25.search("zzqx", 3) == []  # nothing matches: nothing
    assert len(bm25.search("disease", 1000)) <= len(DOCS)
    again = BM25Retriever(KB, cache_dir=tmp_path)
    assert again.from_cache and again.search(drug["title"], 5) == bm25.search(drug["title"], 5)
    edited = tmp_path / "kb.jsonl"
    shutil.copy(KB, edited)
    with edited.open("a") as f:
        f.write(json.dumps({"id": "new-1", "text": "qorvanthium is a brand new entry."}) + "\n")
    fresh = BM25Retriever(edited, cache_dir=tmp_path)
    assert not fresh.from_cache and fresh.cache != bm25.cache  # a changed file is never served a stale index
    assert fresh.search("qorvanthium", 2) == ["new-1"]
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def test_dense_and_hybrid_offline_with_cached_embeddings(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (bundled_minilm_path() / "modules.json").is_file()
    test_doc = next(d for d in DOCS if d["id"].startswith("test-"))
    measures = test_doc["text"].split(" measures ")[1].split(".")[0]  # e.g. "fibrin fragments in serum"
    query = f"which laboratory investigation quantifies {measures}"
    dense = DenseRetriever(KB, cache_dir=tmp_path / "dense")
    assert not dense.from_cache
    assert test_doc["id"] in dense.search(query, 3)
    again = DenseRetriever(KB, cache_dir=tmp_path / "dense")
    assert again.from_cache and again.search(query, 5) == dense.search(query, 5)
    hybrid = HybridRetriever(KB, cache_dir=tmp_path, rrf_k=60, depth=10)
    assert hybrid.bm25.from_cache is False and hybrid.dense.from_cache  # dense reuses the cache above
    expected = rrf([hybrid.bm25.search(query, 10), hybrid.dense.search(query, 10)], 60)[:4]
    assert hybrid.search(query, 4) == expected and test_doc["id"] in hybrid.search(query, 3)


def test_retrieval_configs_instantiate(tmp_path):
    import qwenft  # noqa: F401 - ${demo:} resolver

    assert instantiate(OmegaConf.load(conf_dir() / "retrieval" / "none.yaml")) is None
    cfg = OmegaConf.load(conf_dir() / "retrieval" / "bm25.yaml")
    cfg.cache_dir = str(tmp_path)
    retriever = instantiate(cfg)
    assert isinstance(retriever, BM25Retriever) and retriever.kb.path == str(KB)


@pytest.mark.parametrize(("preset", "expected"), [(None, "cpu"), ("cuda", "cuda")])
def test_bm25_keeps_jax_off_the_gpu_unless_the_caller_chose_otherwise(tmp_path, preset, expected):
    """bm25s runs a JAX op at import: on a GPU box that grabbed 75 % of the card (experiments/results/gpu_check)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"} | ({"JAX_PLATFORMS": preset} if preset else {})
    code = ("import os, sys; from qwenft.retrieval.bm25 import BM25Retriever; "
            f"BM25Retriever({str(KB)!r}, cache_dir={str(tmp_path)!r}); print(os.environ.get('JAX_PLATFORMS'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == expected
