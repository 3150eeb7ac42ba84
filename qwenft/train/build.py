"""Build what a run trains: the model (loaded, extended, wrapped) and its data module.

The order is fixed here: the new rows must exist before PEFT decides what trains, and PEFT must wrap the model
before the optimizer sees its parameters. ``qwenft export`` rebuilds a finished run's model with the same
``build_model``, so an export holds exactly the words, rows and adapter the run trained.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.adapters.apply import PeftSpec, apply_peft
from qwenft.data.datamodule import Prepared, TrainData
from qwenft.data.text import read_texts
from qwenft.errors import UserError
from qwenft.tokenizer.discover import discover_words
from qwenft.tokenizer.extend import distill_settings, read_words_file, words_from_config
from qwenft.tokenizer.word_report import extend_reported
from qwenft.train.heldout import Heldout, heldout_texts
from qwenft.train.speed import compile_layers, frozen_dtype, hold_frozen_in

log = logging.getLogger(__name__)


@dataclass
class Built:
    """The model as it trains: ``loaded`` (name, tokenizer, instruct), the extended tokenizer, the new token ids
    and words, the vocabulary manifest (None without extension) and the wrapped ``model``."""

    loaded: object
    tokenizer: object
    new_ids: list[int]
    words: list[str]
    manifest: dict | None
    model: object


def build_model(cfg: DictConfig, train_texts: list[str], report_texts: Sequence[str] = (),
                recorded: dict | None = None) -> Built:
    """Load ``cfg.model``, add the run's words, wrap it for training.

    ``recorded``: the step-0 word report a run already made (``run_info.json``; a resume, an export). Its dropped
    words stay out and it is kept as it is, so the same vocabulary is rebuilt without scoring the held-out text
    again (minutes on real weights)."""
    recorded = recorded or None
    loaded, tokenizer, new_ids, words, manifest = extend_vocabulary(
        cfg, instantiate(cfg.model), train_texts, () if recorded else report_texts,
        (recorded or {}).get("dropped") or ())
    if recorded and manifest is not None:
        manifest["words_report"] = recorded  # the step-0 report travels with the run and its exported model
    return Built(loaded, tokenizer, new_ids, words, manifest, wrap_model(cfg, loaded.model, new_ids))


def recorded_report(run_info_path: Path) -> dict | None:
    """The ``words_report`` a run wrote into its ``run_info.json`` (None: no file, unreadable, or no report)."""
    try:
        info = json.loads(run_info_path.read_text())
    except (OSError, ValueError):
        return None
    report = info.get("words_report") if isinstance(info, dict) else None
    return report if isinstance(report, dict) else None


@dataclass
class Splits:
    """The data module serving the tokenized splits, and the held-out text the new-word metrics score."""

    heldout: Heldout
    module: TrainData

    @property
    def train(self) -> Prepared:
        return self.module.train_set

    @property
    def val(self) -> Prepared | None:
        return self.module.val_set

    @property
    def test(self) -> Prepared | None:
        return self.module.test_set

    def items(self) -> list[tuple[str, Prepared]]:
        return [(k, v) for k, v in (("train", self.train), ("val", self.val), ("test", self.test)) if v is not None]


def build_data(cfg: DictConfig, sources: dict, built: Built) -> Splits:
    """The data module, connected to the run's tokenizer (``TrainData.connect``), and the held-out text the
    new-word metrics score."""
    module = TrainData.connect(cfg.data, sources, built.tokenizer, instruct=built.loaded.instruct,
                               strategy=cfg.strategy.name, seed=cfg.seed,
                               attn_implementation=getattr(built.loaded.model.config, "_attn_implementation", None))
    val = module.val_set
    heldout = heldout_texts(cfg, module.train_set.texts, val.texts if val is not None else None, read_texts)
    return Splits(heldout, module)


def extend_vocabulary(cfg: DictConfig, loaded, train_texts: list[str], report_texts: Sequence[str] = (),
                      exclude: Sequence[str] = ()):
    """Add the configured (or discovered) words, less ``exclude`` (words an earlier ``drop_worse`` left out);
    ``report_texts``: held-out text for the step-0 per-word report (``qwenft.tokenizer.word_report``).
    Returns ``(loaded, tokenizer, new_ids, words, manifest)``: ``loaded`` is a fresh load when words were dropped."""
    if not cfg.tokenizer.extend:
        words = read_words_file(cfg.eval_words_file)[0] if cfg.get("eval_words_file") else []
        given = [k for k in ("words", "words_file", "discover") if cfg.tokenizer.get(k)]
        if given:  # validation refuses them without eval_words_file; with it, they are ignored: say so
            log.warning("tokenizer=none: tokenizer.%s is ignored (no extension); the words scored are those of "
                        "eval_words_file=%s", given[0], cfg.eval_words_file)
        return loaded, loaded.tokenizer, [], words, None  # ablations: the words are still scored, as their pieces
    if cfg.tokenizer.discover:
        found = discover_words(train_texts, loaded.tokenizer, **cfg.tokenizer.discover)
        words, glosses = [c.word for c in found], {}
        if not words:  # a split without any candidate: say so, not "no new tokens to add ... 0 words"
            settings = ", ".join(f"{k}: {v}" for k, v in cfg.tokenizer.discover.items())
            raise UserError(f"tokenizer.discover={{{settings}}}: found no new word in the training data; lower "
                            "min_count / min_length, or give the words (tokenizer.words=[...] or "
                            "tokenizer.words_file=PATH)")
        log.info("discovered %d words in the training data: %s", len(words), ", ".join(words[:20]))
    else:
        words, glosses = words_from_config(cfg.tokenizer)
    excluded = set(exclude)
    words = [w for w in words if w not in excluded]
    loaded, ext, report = extend_reported(
        loaded, lambda: instantiate(cfg.model), words, report_texts,
        drop_worse=bool(cfg.tokenizer.get("drop_worse", False)), init=cfg.tokenizer.init, glosses=glosses,
        capitalized=cfg.tokenizer.capitalized, seed=cfg.seed, texts=train_texts,
        distill=distill_settings(cfg.tokenizer, cfg.seed))
    log.info("vocabulary: %d new tokens for %d words; per form (also in qwenft_vocab.json \"forms\"):\n  %s",
             len(ext.new_ids), len(ext.words), "\n  ".join(ext.report_lines()))
    manifest = ext.manifest()
    if report is not None:
        log.info("%s; per word, worst first (also in run_info.json \"words_report\"):\n  %s", report.summary(ext.init),
                 "\n  ".join(f"{r['word']}: {r['occurrences']} x, pieces {r['nll_pieces']:.2f} -> token "
                              f"{r['nll_new']:.2f} ({r['delta']:+.2f} nats)" for r in report.per_word[:30]))
        manifest["words_report"] = report.as_dict()
    return loaded, ext.tokenizer, ext.new_ids, ext.words, manifest


def wrap_model(cfg: DictConfig, model, new_ids: list[int]):
    model = apply_peft(model, PeftSpec(**OmegaConf.to_container(cfg.peft)), new_ids,
                       str(cfg.tokenizer.trainable_rows) if cfg.tokenizer.extend else "frozen")
    if cfg.get("gradient_checkpointing", False):
        # transformers 5.24 renamed it (gradient_checkpointing_enable warns and forwards here)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if not any(p.requires_grad for n, p in model.named_parameters() if "embed_tokens" in n):
            model.enable_input_require_grads()  # frozen embeddings would otherwise cut the graph
    dtype = frozen_dtype(str(cfg.get("frozen_dtype", "auto")), cfg.trainer.get("accelerator", "cpu"),
                         cfg.trainer.get("precision", "32-true"))
    if hold_frozen_in(model, dtype):
        log.info("frozen weights held in %s (frozen_dtype=%s); trained parameters in float32",
                 str(dtype).removeprefix("torch."), cfg.get("frozen_dtype", "auto"))
    if cfg.get("compile", False):
        log.info("compile=true: %d decoder layers compiled with torch.compile (dynamic shapes)", compile_layers(model))
    return model.train()  # from_pretrained returns eval mode; LoRA dropout must be active while training
