"""The settings of new embedding rows, declared once: how they start (``INITS``, read by ``qwenft.model.rows``) and
the budget of the distillation (``DistillSettings``, read by ``qwenft.model.distill``).

A light module (no torch) so that the ``tokenizer`` config schema can be built from it at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwenft.rules import UINT32, Float, Int, setting

#: how a new row starts (``tokenizer.init``); ``distill`` starts from ``adaptivocab`` and learns the input rows
INITS = ("distill", "mean_subword", "adaptivocab", "description", "default", "random")


@dataclass
class DistillSettings:
    """``tokenizer.distill``: the budget and weights of ``tokenizer.init=distill``."""

    snippets_per_word: int = setting(6, Int(1, 100000), "snippets per word from the text (the model writes some "
                                                         "when it has under half)")
    chars_before: int = setting(60, Int(0, 100000), "characters of context kept before an occurrence (cut at a space)")
    chars_after: int = setting(80, Int(0, 100000), "characters kept after it")
    epochs: int = setting(1, Int(0, 1000), "passes over the snippets")
    batch_size: int = setting(8, Int(1, 100000), "snippets a step")
    lr: float = setting(1e-4, Float(0, 10, lo_open=True), "Adam on the new input rows only, the model frozen (1e-3 "
                                                          "broke the offline model's rows: bits/byte 1.85 -> 4.8)")
    generated_tokens: int = setting(40, Int(1, 4096), "length of a model-written snippet")
    seed: int | None = setting(None, Int(0, UINT32, null=True), "null: the run's seed")
