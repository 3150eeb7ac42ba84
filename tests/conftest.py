"""Shared test setup: nothing reaches the network, W&B stays offline, and tiny models are built fresh per test."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _fresh_distill_cache(tmp_path_factory, monkeypatch):
    """Each test distils into a cache of its own (``qwenft.model.distill_cache``): a test reads the rows it made,
    never rows an earlier test or run left in ``~/.cache/qwenft``."""
    from qwenft.model import distill_cache

    folder = tmp_path_factory.mktemp("distill-cache")
    monkeypatch.setattr(distill_cache, "root", lambda: folder)


@pytest.fixture
def demo_words() -> list[str]:
    """A handful of the demo's invented words: enough new rows to notice a lost or untied row."""
    from qwenft.data.datamodule import DEMO_DIR
    from qwenft.tokenizer.extend import read_words_file

    return read_words_file(DEMO_DIR / "words.txt")[0][:6]


@pytest.fixture(scope="module")
def loaded():
    """The tiny model for clinical answering tests; untied embeddings: its greedy decoding writes varied,
    non-empty text."""
    from qwenft.model.sources import tiny

    return tiny(tie_word_embeddings=False, seed=0)


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    """BM25 over the demo knowledge base, indexed once per module."""
    from qwenft.data.datamodule import DEMO_DIR
    from qwenft.retrieval.bm25 import BM25Retriever

    return BM25Retriever(DEMO_DIR / "kb.jsonl", cache_dir=tmp_path_factory.mktemp("bm25"))


@pytest.fixture(autouse=True)
def _qwenft_loggers_reach_caplog():
    """In-process ``answer``/``serve`` runs (the bad-input battery) apply ``hydra/job_logging: disabled``, whose
    ``disable_existing_loggers: true`` switches off every logger that exists by then; a later test reading its own
    log lines with ``caplog`` then saw nothing (reproduced: a dictConfig with that flag before
    ``test_data_io.py::test_skip_bad_rows`` fails it). The same config sets the root logger to ERROR, so every
    warning of a later test stopped at its logger (CI, stop 30: ``test_train.py::
    test_prompt_completion_files_without_val_still_report_new_words`` saw an empty ``caplog.text``). Every qwenft
    logger and the root level are reset before each test."""
    import logging

    logging.disable(logging.NOTSET)  # a library may have switched records off process-wide
    logging.root.setLevel(logging.WARNING)  # Python's default; hydra/job_logging/disabled.yaml leaves ERROR
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("qwenft") and isinstance(logger, logging.Logger):
            logger.disabled, logger.propagate = False, True
            logger.setLevel(logging.NOTSET)
    yield
