"""One training run: load -> extend the vocabulary -> wrap (LoRA / full, trainable rows) -> fit -> export.

The order matters and is fixed here: the new rows must exist before PEFT decides what trains, and PEFT must
wrap the model before the optimizer sees its parameters. Every data file is loaded and validated before the
model is, and tokenized before ``trainer.fit``, so a bad file costs seconds, not a run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from qwenft.adapters.apply import PeftSpec, apply_peft, trainable_summary
from qwenft.atomic import atomic_write_text, recover
from qwenft.data.datamodule import TrainData, load_splits, prepare, split_texts
from qwenft.data.packing import row_length
from qwenft.data.text import read_texts
from qwenft.errors import Interrupted, OutputError, UserError
from qwenft.tokenizer.discover import discover_words
from qwenft.tokenizer.extend import distill_settings, read_words_file, words_from_config
from qwenft.tokenizer.word_report import extend_reported
from qwenft.train import preflight, rundir
from qwenft.train.callbacks import NewWordMetrics, SaveOnSignal, ValidateOnResume, validation_due
from qwenft.train.checkpoint_io import load_checkpoint_file
from qwenft.train.export import ExportSignals, export, model_card, publish
from qwenft.train.heldout import (
    FALLBACK_MONITOR,
    NEW_WORD_MONITOR,
    NO_WORDS,
    heldout_texts,
    monitor_fallback,
    new_word_metrics_texts,
    zero_shot_texts,
)
from qwenft.train.identity import RunIdentity, check_export_identity, check_resume_shape, checkpoint_shape
from qwenft.train.module import QwenFTModule
from qwenft.train.runinfo import run_info, tokenizer_sha256
from qwenft.train.speed import compile_layers, frozen_dtype, hold_frozen_in
from qwenft.validation import validate

log = logging.getLogger(__name__)


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """``last`` = this run dir's ``checkpoints/last.ckpt`` (point ``run_dir=``/``hydra.run.dir=`` at the old run);
    a run directory = its last checkpoint; anything else = a checkpoint file."""
    if not ckpt_path:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if str(ckpt_path) == "last" else Path(ckpt_path)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        hint = " (set run_dir= or hydra.run.dir= to the run to resume)" if str(ckpt_path) == "last" else ""
        raise UserError(f"ckpt_path={ckpt_path}: {path} does not exist{hint}")
    return path


def check_resume_data(state: dict | None, ckpt: Path | None, data_sha256: dict[str, str],
                      allow_change: bool) -> dict[str, str] | None:
    """Refuse to resume with other data than the checkpoint was trained on, unless ``allow_data_change=true``.

    The checkpoint's own record is the reference (older checkpoints: the ``run_info.json`` of the run that wrote
    them). Returns the previous hashes when a change is allowed (recorded in ``run_info.json``), else None.
    """
    if state is None or ckpt is None:
        return None
    saved = state.get("qwenft_data_sha256")
    if not isinstance(saved, dict):
        info = ckpt.parent.parent / "run_info.json"
        try:
            saved = json.loads(info.read_text()).get("data_sha256") if info.is_file() else None
        except (OSError, ValueError, AttributeError):
            saved = None
    if not isinstance(saved, dict):
        log.warning("%s: no record of the data it was trained on; cannot check the data is the same", ckpt)
        return None
    splits = sorted(set(saved) | set(data_sha256), key=lambda k: (("train", "val", "test") + (k,)).index(k))
    changed = [k for k in splits if saved.get(k) != data_sha256.get(k)]
    if not changed:
        return None
    split = changed[0]
    before, now = saved.get(split), data_sha256.get(split)
    what = (f"its {split} data had sha256 {before[:12]}…, now {now[:12]}…" if before and now else
            f"it was trained {'without' if not before else 'with'} a {split} split, now {'without' if not now else 'with'}")
    if not allow_change:
        raise UserError(f"ckpt_path={ckpt}: resuming with other data than the checkpoint was trained on ({what}); "
                        "use the same data files, or set allow_data_change=true to continue on new data")
    log.warning("allow_data_change=true: resuming %s with changed data (%s)", ckpt, what)
    return dict(saved)


def check_resume_tokenizer(state: dict, ckpt: Path, tokenizer) -> None:
    """A checkpoint's rows belong to the tokenizer it was trained with: another one is refused up front."""
    saved = state.get("qwenft_tokenizer_sha256")
    now = tokenizer_sha256(tokenizer)
    if saved is not None and saved != now:
        raise UserError(f"ckpt_path={ckpt}: checkpoint was trained with a different tokenizer (sha256 {saved[:12]}…, "
                        f"now {now[:12]}…): resume with the same model/tokenizer config")


def check_resume_tensors(saved: dict[str, tuple], state: dict, ckpt: Path) -> None:
    """The checkpoint's tensors must be this model's trainable ones, name for name and size for size (a mismatch
    would fail inside ``trainer.fit``, after the run's files were rewritten)."""
    now = {k: tuple(v.shape) for k, v in state.items()}
    extra, missing = sorted(set(saved) - set(now)), sorted(set(now) - set(saved))
    wrong = sorted(k for k in set(saved) & set(now) if saved[k] != now[k])
    if wrong:
        raise UserError(f"ckpt_path={ckpt}: {len(wrong)} tensors have another size in this run (e.g. {wrong[0]}: "
                        f"{list(saved[wrong[0]])} in the checkpoint, {list(now[wrong[0]])} now): resume with the "
                        "settings the checkpoint was trained with")
    if extra or missing:
        name = (extra or missing)[0]
        raise UserError(f"ckpt_path={ckpt}: the checkpoint's trainable tensors differ from this run's "
                        f"({len(extra)} only in the checkpoint, {len(missing)} only in this run, e.g. {name}): "
                        "resume with the settings the checkpoint was trained with")


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
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
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


def build_callbacks(cfg: DictConfig, fallback: str | None, has_loggers: bool,
                    monitors: dict[str, dict] | None = None) -> list[pl.Callback]:
    """Every entry of ``cfg.callbacks`` with a ``_target_`` (``conf/callbacks/*.yaml``); ``null`` entries are off.

    Two adjustments that follow from the run rather than from taste: when ``val/new_word_nll`` will not be
    logged (``fallback`` says why: no new words, or none in the held-out text) the best checkpoint monitors
    ``val/loss``, and the LR monitor needs a logger. ``monitors`` receives what each checkpoint callback
    monitors, and why (``run_info.json``).
    """
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        if node.get("monitor") == NEW_WORD_MONITOR and fallback:
            # a warning when the run has words the text lacks; plain information for a run without words
            log.log(logging.INFO if fallback == NO_WORDS else logging.WARNING,
                    "callbacks.%s: %s, so %s is never logged: the best checkpoint monitors %s instead", name,
                    fallback, NEW_WORD_MONITOR, FALLBACK_MONITOR)
            node = OmegaConf.merge(node, {"monitor": FALLBACK_MONITOR})
            if monitors is not None:
                monitors[name] = {"monitor": FALLBACK_MONITOR, "instead_of": NEW_WORD_MONITOR, "reason": fallback}
        elif node.get("monitor"):
            log.info("callbacks.%s: the best checkpoint monitors %s", name, node.get("monitor"))
            if monitors is not None:
                monitors[name] = {"monitor": str(node.get("monitor"))}
        callback = instantiate(node)
        if isinstance(callback, pl.callbacks.LearningRateMonitor) and not has_loggers:
            continue
        callbacks.append(callback)
    return callbacks


def build_loggers(cfg: DictConfig) -> list:
    """Every entry of ``cfg.logger`` with a ``_target_`` (``conf/logger/*.yaml``)."""
    return [instantiate(node) for node in (cfg.get("logger") or {}).values()
            if isinstance(node, DictConfig) and "_target_" in node]


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list, run_dir: Path, has_val: bool) -> pl.Trainer:
    extra = {"callbacks": callbacks, "logger": loggers or False, "default_root_dir": str(run_dir),
             "enable_progress_bar": any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks)}
    if not has_val:
        extra["limit_val_batches"] = 0
    return instantiate(cfg.trainer, **extra)


def load_best(module: QwenFTModule, callbacks: list) -> str:
    """Put the best checkpoint's trainable weights into ``module`` (``export.checkpoint=best``)."""
    best = best_checkpoint(callbacks)
    if best is None:
        raise UserError("export.checkpoint=best: no best checkpoint was saved (callbacks.best_checkpoint is off, "
                        "or no validation ran)")
    state = load_checkpoint_file(best.best_model_path)["state_dict"]
    module.load_state_dict(state, strict=False)
    log.info("exporting the best checkpoint %s (%s=%.4f)", best.best_model_path, best.monitor,
             float(best.best_model_score))
    return str(best.best_model_path)


def best_checkpoint(callbacks: list) -> pl.callbacks.ModelCheckpoint | None:
    """The callback that kept the best checkpoint by its monitored metric, if one was saved."""
    return next((c for c in callbacks if isinstance(c, pl.callbacks.ModelCheckpoint) and c.monitor
                 and c.best_model_path), None)


def run_test(trainer: pl.Trainer, module: QwenFTModule, data: TrainData, callbacks: list) -> dict:
    """The test split, scored once after fit by Lightning's test stage with the best checkpoint (the final
    weights when none was kept); ``test/loss`` and the new-word metrics, logged and returned for metrics.json.

    The module's weights are put back afterwards: what the run exports is chosen by ``export.checkpoint``, not by
    which weights the test happened to read.
    """
    best = best_checkpoint(callbacks)
    final = {k: v.detach().clone() for k, v in module.state_dict().items()}
    trainer.test(module, datamodule=data, ckpt_path=best.best_model_path if best else None, verbose=False)
    module.load_state_dict(final, strict=False)
    out = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    out["test/checkpoint"] = str(best.best_model_path) if best else "last"
    log.info("test split (%s checkpoint): %s", "best" if best else "last",
             ", ".join(f"{k}={v:.4g}" for k, v in out.items() if isinstance(v, float)))
    return out


def train(cfg: DictConfig, run_dir: str | Path | None = None, handles: dict | None = None) -> dict:
    """The whole run; returns the final metrics (also written to ``metrics.json``).

    ``handles``, if given, receives the trained ``module``, the ``tokenizer`` and the ``trainer`` (benchmarks,
    notebooks).
    """
    validate(cfg, "train")  # every key's type and range: one line before anything is read or loaded
    key = "run_dir" if run_dir or cfg.get("run_dir") else "hydra.run.dir"
    run_dir = Path(run_dir or cfg.get("run_dir") or cfg.paths.output_dir)
    # the folder is this run's alone: not another run's (unless resuming), not written by two processes at once
    with rundir.claim(run_dir, resuming=bool(cfg.get("ckpt_path")), key=key):
        return _train(cfg, run_dir, handles)


def _train(cfg: DictConfig, run_dir: Path, handles: dict | None) -> dict:
    if str(run_dir) != str(cfg.paths.output_dir):  # loggers and callbacks write under paths.output_dir
        cfg = OmegaConf.merge(cfg, {"paths": {"output_dir": str(run_dir)}})
    log.info("run dir: %s", run_dir)
    preflight.check(cfg)  # keys that reach libraries (Trainer kwargs, LoRA target modules): before any loading
    pl.seed_everything(cfg.seed, workers=True)
    sources = load_splits(cfg.data)  # fail on bad input before loading a model
    preflight.check_best_export(cfg, "val" in sources)
    if cfg.tokenizer.extend and not cfg.tokenizer.discover:
        words_from_config(cfg.tokenizer)  # a bad words file fails here too, not after the model loads
    ckpt = resolve_ckpt(cfg.ckpt_path, run_dir)
    resumed = load_checkpoint_file(ckpt, mmap=True) if ckpt else None  # unreadable: one line, nothing written
    data_sha256 = {k: v.sha256 for k, v in sources.items()}
    previous_data = check_resume_data(resumed, ckpt, data_sha256, bool(cfg.get("allow_data_change", False)))
    resumed_shapes, resumed_step = None, 0
    if resumed is not None:  # another adapter / model / vocabulary setting: refused before the model loads
        check_resume_shape(resumed, ckpt, cfg)
        resumed_shapes = {k: tuple(v.shape) for k, v in resumed["state_dict"].items()}
        resumed_step = int(resumed.get("global_step") or 0)
    strategy = cfg.strategy.name

    loaded = instantiate(cfg.model)
    train_texts = split_texts(sources["train"], strategy)
    report_texts = zero_shot_texts(cfg, train_texts, split_texts(sources["val"], strategy) if "val" in sources
                                   else None, read_texts).texts if cfg.tokenizer.extend else []
    loaded, tokenizer, new_ids, words, manifest = extend_vocabulary(cfg, loaded, train_texts, report_texts)
    if resumed is not None:  # refused here, before this run writes anything into the old run's dir
        check_resume_tokenizer(resumed, ckpt, tokenizer)
        del resumed
    train_set = prepare(sources["train"], tokenizer, loaded.instruct, cfg.data, strategy)
    val_set = prepare(sources["val"], tokenizer, loaded.instruct, cfg.data, strategy) if "val" in sources else None
    test_set = prepare(sources["test"], tokenizer, loaded.instruct, cfg.data, strategy) if "test" in sources else None
    heldout = heldout_texts(cfg, train_set.texts, val_set.texts if val_set else None, read_texts)

    model = wrap_model(cfg, loaded.model, new_ids)
    pack_length = cfg.data.get("pack_length") or cfg.data.max_length
    if cfg.data.get("tokens_per_batch"):
        attn = getattr(loaded.model.config, "_attn_implementation", None)
        rows = row_length(attn, cfg.data.tokens_per_batch, pack_length)
        if rows != pack_length:
            log.info("attention %s separates packed examples only in single-row batches: packed rows of "
                     "data.tokens_per_batch=%d tokens instead of data.pack_length=%d", attn, rows, pack_length)
        pack_length = rows
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = QwenFTModule(model, instantiate(cfg.optim), scheduler, cfg.tokenizer.rows_lr, tokenizer, loaded.instruct,
                          words, head_loss=str(cfg.get("head_loss", "dense")),
                          head_loss_chunk=int(cfg.get("head_loss_chunk", 4096)))
    if resumed_shapes is not None:  # whatever else shapes the tensors: still before anything is written
        check_resume_tensors(resumed_shapes, module.state_dict(), ckpt)
    for note in recover(run_dir) + recover(run_dir / "checkpoints"):
        log.info("run dir: %s (left by an interrupted process)", note)
    data = TrainData(train_set, val_set, batch_size=cfg.data.batch_size, pad_id=tokenizer.pad_token_id,
                     seed=cfg.seed, packing=cfg.data.get("packing", False),
                     max_val_examples=cfg.data.max_val_examples, heldout_texts=heldout.texts, test=test_set,
                     tokens_per_batch=cfg.data.get("tokens_per_batch"), pack_length=pack_length)
    loggers = build_loggers(cfg)
    monitors: dict[str, dict] = {}
    callbacks = [*build_callbacks(cfg, monitor_fallback(cfg, words, heldout), bool(loggers), monitors),
                 RunIdentity(data_sha256, checkpoint_shape(cfg))]
    if val_set is not None and validation_due(resumed_step, cfg.trainer, run_dir / "history.jsonl"):
        callbacks.append(ValidateOnResume(resumed_step))  # killed during that step's validation: redo it
    trainer = build_trainer(cfg, callbacks, loggers, run_dir, val_set is not None)

    info = run_info(cfg, data_sha256)
    if previous_data is not None:  # allow_data_change=true: the change is on record, not silent
        info["previous_data_sha256"] = previous_data
    info.update(trainable_summary(model), tokenizer_sha256=module.tokenizer_sha256, words=len(words),
                new_tokens=len(new_ids), world_size=trainer.world_size,
                data={"train": train_set.stats, **({"val": val_set.stats} if val_set else {}),
                      **({"test": test_set.stats} if test_set else {})},
                heldout=heldout.record(words, new_word_metrics_texts(cfg)), monitors=monitors,
                words_report=(manifest or {}).get("words_report"))
    if trainer.global_rank == 0:
        atomic_write_text(run_dir / "run_info.json", json.dumps(info, indent=2))
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        for lg in loggers:
            lg.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True), "run_info": info})
    try:
        if cfg.validate_before and val_set is not None and ckpt is None:
            trainer.validate(module, datamodule=data, verbose=False)  # the zero-shot numbers the run starts from
        trainer.fit(module, datamodule=data, ckpt_path=str(ckpt) if ckpt else None)
    except SIGTERMException:  # Lightning's own handler (before our callback takes over) would exit 0
        raise Interrupted(signal.SIGTERM, f"SIGTERM before training started; nothing was exported (run dir "
                                          f"{run_dir})") from None
    stopped = next((c for c in callbacks if isinstance(c, SaveOnSignal) and c.received is not None), None)
    if stopped is not None:  # the weights of step N are not the final model: no export, no metrics.json
        name = Interrupted(stopped.received, "").signal_name
        raise Interrupted(stopped.received, f"{name} at step {trainer.global_step}: saved {stopped.ckpt_path}; "
                                            f"nothing was exported. Resume with the same command plus "
                                            f"ckpt_path=last run_dir={run_dir}")
    if handles is not None:
        handles.update(module=module, tokenizer=tokenizer, trainer=trainer)

    new_word = next((c for c in callbacks if isinstance(c, NewWordMetrics)), None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) or isinstance(v, float)}
    if new_word is not None:
        metrics.update({k: v for k, v in new_word.latest.items() if k not in metrics})
    metrics.update({"global_step": trainer.global_step, "train/avg_tokens_per_s": module.avg_tokens_per_s,
                    "data/train_pad_fraction_epoch": data.train_loader.pad_fraction()})
    if test_set is not None:
        metrics.update(run_test(trainer, module, data, callbacks))
    for split, prepared in (("train", train_set), ("val", val_set), ("test", test_set)):
        if prepared is not None:  # over-long examples are never silent: counted in every run's metrics
            metrics[f"data/{split}_overlong"] = prepared.overlong
            metrics[f"data/{split}_dropped"] = prepared.dropped
            metrics[f"data/{split}_windowed"] = prepared.stats.get("windowed", 0)  # raw text cut, not truncated
    if trainer.global_rank == 0:
        if cfg.export.enabled:
            # all or nothing: tokenizer/, adapter/, merged/ and metrics.json move in together; a SIGTERM before
            # that is one line (exit 143) and leaves the previous outputs as they were
            with ExportSignals(run_dir) as guard:
                which = str(cfg.export.get("checkpoint", "last"))
                if which == "best":
                    metrics["export/checkpoint"] = load_best(module, callbacks)
                card = model_card(base_model=loaded.name, manifest=manifest, run_info=info, metrics=metrics,
                                  config=cfg, checkpoint=which)
                try:
                    metrics["outputs"] = export(model, tokenizer, run_dir, manifest, adapter=cfg.export.adapter,
                                                card=card, metrics=metrics, guard=guard)
                except OutputError:  # a full disk: keep the run's numbers; `qwenft export RUN_DIR` redoes the rest
                    with contextlib.suppress(OutputError):
                        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
                    raise
            publish(cfg.export, run_dir, loggers)
        else:
            atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    log.info("run dir: %s", run_dir)
    return metrics


def train_steps(overrides: list[str], steps: int, run_dir: str | Path) -> dict:
    """Benchmarks and notebooks: compose ``conf/train.yaml`` with ``overrides``, train ``steps`` steps, return stats.

    Runs without Hydra's runtime (no ``.hydra/`` folder); the stats are those of ``metrics.json``, including
    ``train/avg_tokens_per_s`` (non-pad tokens/s, first step excluded) and ``train/pad_fraction``.
    """
    from qwenft.config import compose

    cfg = compose("train", [*overrides, f"trainer.max_steps={steps}", f"paths.output_dir={run_dir}"])
    return train(cfg, run_dir=run_dir)


def run_metrics(run_dir: Path) -> dict:
    """The run's final metrics for a model card: ``metrics.json``, or (a run killed before writing it) the last
    value of each metric in ``history.jsonl``, so a re-export still shows the loss and validation numbers."""
    path = run_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        log.warning("%s: unreadable, using history.jsonl instead", path)
        metrics = None
    if isinstance(metrics, dict):
        return metrics
    last: dict = {}
    hist = run_dir / "history.jsonl"
    for line in hist.read_text(errors="replace").splitlines() if hist.is_file() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            last.update({k: v for k, v in row.items() if k != "step" and isinstance(v, int | float)})
    return last


def export_run(run_dir: str | Path, checkpoint: str = "last", push_to_hub: bool | None = None) -> dict[str, str]:
    """Re-export a finished or interrupted run from one of its checkpoints (``qwenft export RUN_DIR``).

    The run's own ``config.yaml`` rebuilds the model exactly as training did (same words, same rows, same
    adapter); the checkpoint's trainable weights go in; the tokenizer hash recorded in the checkpoint must match.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"run_dir={run_dir}: no config.yaml here (not a `qwenft train` run directory)")
    if checkpoint not in ("last", "best"):
        raise UserError(f"checkpoint={checkpoint!r}: use last or best")
    ckpt = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.is_file():
        raise UserError(f"checkpoint={checkpoint}: {ckpt} does not exist")
    rundir.writable(run_dir, "run_dir")
    with rundir.lock(run_dir):  # not while a training process writes the same run
        return _export_run(run_dir, ckpt, checkpoint, push_to_hub)


def _export_run(run_dir: Path, ckpt: Path, checkpoint: str, push_to_hub: bool | None) -> dict[str, str]:
    try:
        cfg = OmegaConf.load(run_dir / "config.yaml")
    except Exception as err:  # a truncated or hand-edited YAML
        raise UserError(f"{run_dir / 'config.yaml'}: cannot read: {str(err).splitlines()[0][:160]}") from None
    state = load_checkpoint_file(ckpt)
    try:
        info = json.loads((run_dir / "run_info.json").read_text())
    except (OSError, ValueError):
        info = {}  # killed before it was written, or unreadable: the checkpoint's own records still count
    info = info if isinstance(info, dict) else {}
    check_export_identity(state, ckpt, cfg, info)  # another run's checkpoint: refused before the model loads
    for note in recover(run_dir) + recover(run_dir / "checkpoints"):
        log.info("run dir: %s (left by an interrupted process)", note)
    sources = load_splits(cfg.data)
    loaded = instantiate(cfg.model)
    dropped = ((info.get("words_report") or {}).get("dropped") or []) if isinstance(info, dict) else []
    loaded, tokenizer, new_ids, words, manifest = extend_vocabulary(  # the words the run trained, no re-scoring
        cfg, loaded, split_texts(sources["train"], cfg.strategy.name), exclude=dropped)
    if manifest is not None and info.get("words_report"):
        manifest["words_report"] = info["words_report"]  # the step-0 report travels with the exported model
    saved = state.get("qwenft_tokenizer_sha256")
    if saved is not None and saved != tokenizer_sha256(tokenizer):
        raise UserError(f"{ckpt}: trained with another tokenizer than this run's config rebuilds (data or words "
                        "changed since)")
    model = wrap_model(cfg, loaded.model, new_ids)
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    params = dict(model.named_parameters())
    missing = set(weights) - set(params)
    if missing:
        raise UserError(f"{ckpt}: {len(missing)} tensors do not fit this run's model (e.g. {sorted(missing)[0]})")
    wrong = sorted(k for k, v in weights.items() if tuple(v.shape) != tuple(params[k].shape))
    if wrong:
        raise UserError(f"{ckpt}: {len(wrong)} tensors do not fit this run's model (e.g. {wrong[0]}: "
                        f"{list(weights[wrong[0]].shape)}, the model's {list(params[wrong[0]].shape)})")
    model.load_state_dict(weights, strict=False)
    metrics = run_metrics(run_dir)
    metrics["global_step"] = state.get("global_step", metrics.get("global_step"))
    card = model_card(base_model=loaded.name, manifest=manifest, run_info=info, metrics=metrics, config=cfg,
                      checkpoint=checkpoint)
    out = export(model, tokenizer, run_dir, manifest, adapter=bool(cfg.export.get("adapter", True)), card=card)
    export_cfg = OmegaConf.merge(cfg.export, {"push_to_hub": cfg.export.get("push_to_hub", False)
                                              if push_to_hub is None else push_to_hub, "checkpoint": checkpoint})
    publish(export_cfg, run_dir, [])
    return out
