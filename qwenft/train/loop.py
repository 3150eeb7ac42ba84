"""One training run, in four phases a reader can follow top to bottom.

``preflight`` (no model: the config's library keys, every data file, the words file, the checkpoint to resume and
whether it fits this run's data) -> ``build_model`` and ``build_data`` (``qwenft.train.build``: load, extend,
wrap; tokenize) -> ``fit`` (callbacks, trainer, ``run_info.json``, Lightning's fit) -> ``finish`` (metrics, the
test split, the export). Every data file is loaded and validated before the model is, and tokenized before
``trainer.fit``, so a bad file costs seconds, not a run; nothing is written into the run dir before the resume
checks pass.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from qwenft.adapters.apply import trainable_summary
from qwenft.atomic import atomic_write_text, recover
from qwenft.data.datamodule import Prepared, TrainData, load_splits, split_texts
from qwenft.data.text import read_texts
from qwenft.errors import Interrupted, OutputError, UserError
from qwenft.tokenizer.extend import words_from_config
from qwenft.train import preflight, rundir
from qwenft.train.build import Built, Splits, build_data, build_model, recorded_report
from qwenft.train.callbacks import NewWordMetrics, RunInputs, SaveOnSignal, ValidateOnResume, validation_due
from qwenft.train.checkpoint_io import load_checkpoint_file
from qwenft.train.export import ExportSignals, export, model_card, publish
from qwenft.train.heldout import (
    FALLBACK_MONITOR,
    NEW_WORD_MONITOR,
    NO_WORDS,
    monitor_fallback,
    new_word_metrics_texts,
    zero_shot_texts,
)
from qwenft.train.identity import RunIdentity, check_export_identity, checkpoint_shape
from qwenft.train.module import QwenFTModule
from qwenft.train.resume import Resume, check_resume_tensors, check_resume_tokenizer, open_resume
from qwenft.train.runinfo import run_info, tokenizer_sha256

log = logging.getLogger(__name__)


@dataclass
class Trained:
    """What a finished run leaves in memory: its final ``metrics`` (also in ``metrics.json``), the trained
    ``module`` and ``tokenizer``, and the ``trainer`` (benchmarks and notebooks read them)."""

    metrics: dict
    module: QwenFTModule
    tokenizer: object
    trainer: pl.Trainer


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """The whole run; returns the final metrics (also written to ``metrics.json``); ``train_run`` also returns the
    trained module. ``cfg`` is trusted: ``qwenft train`` validated it once at its start; a library caller runs
    ``qwenft.validation.validate(cfg, "train")`` first (the library never imports the validation layer)."""
    return train_run(cfg, run_dir).metrics


def train_run(cfg: DictConfig, run_dir: str | Path | None = None) -> Trained:
    """``train``, returning the trained module, tokenizer and trainer with the metrics."""
    key = "run_dir" if run_dir or cfg.get("run_dir") else "hydra.run.dir"
    run_dir = Path(run_dir or cfg.get("run_dir") or cfg.paths.output_dir)
    # the folder is this run's alone: not another run's (unless resuming), not written by two processes at once
    with rundir.claim(run_dir, resuming=bool(cfg.get("ckpt_path")), key=key):
        return _train(cfg, run_dir)


def _train(cfg: DictConfig, run_dir: Path) -> Trained:
    if str(run_dir) != str(cfg.paths.output_dir):  # loggers and callbacks write under paths.output_dir
        cfg = OmegaConf.merge(cfg, {"paths": {"output_dir": str(run_dir)}})
    log.info("run dir: %s", run_dir)
    pre = preflight_run(cfg, run_dir)
    built = build_model(cfg, pre.train_texts, pre.report_texts, pre.recorded_report)
    if pre.resume.state is not None:  # refused here, before this run writes anything into the old run's dir
        check_resume_tokenizer(pre.resume.state, pre.resume.ckpt, built.tokenizer)
        pre.resume.state = None
    splits = build_data(cfg, pre.sources, built)
    run = fit(cfg, run_dir, pre, built, splits)
    metrics = finish(cfg, run_dir, run, built, splits)
    log.info("run dir: %s", run_dir)
    return Trained(metrics, run.module, built.tokenizer, run.trainer)


# ---------------------------------------------------------------------------------------------- preflight


@dataclass
class Preflight:
    """What a run knows before any model loads: its checked data, the texts the vocabulary is built and
    reported on, and the checkpoint it resumes."""

    sources: dict
    data_sha256: dict[str, str]
    train_texts: list[str]
    report_texts: list[str]
    resume: Resume
    recorded_report: dict | None = None  # resuming: the step-0 word report of the run that wrote the checkpoint


def preflight_run(cfg: DictConfig, run_dir: Path) -> Preflight:
    """Every check that needs no model; the first problem is one line, and nothing is written."""
    preflight.check(cfg)  # keys that reach libraries (Trainer kwargs, LoRA target modules)
    pl.seed_everything(cfg.seed, workers=True)
    sources = load_splits(cfg.data)  # fail on bad input before loading a model
    preflight.check_best_export(cfg, "val" in sources)
    if cfg.tokenizer.extend and not cfg.tokenizer.discover:
        words_from_config(cfg.tokenizer)  # a bad words file fails here too, not after the model loads
    data_sha256 = {k: v.sha256 for k, v in sources.items()}
    resume = open_resume(cfg, run_dir, data_sha256)
    recorded = recorded_report(resume.ckpt.parent.parent / "run_info.json") if resume.ckpt else None
    strategy = cfg.strategy.name
    train_texts = split_texts(sources["train"], strategy)
    report_texts = zero_shot_texts(cfg, train_texts, split_texts(sources["val"], strategy) if "val" in sources
                                   else None, read_texts).texts if cfg.tokenizer.extend and not recorded else []
    return Preflight(sources, data_sha256, train_texts, report_texts, resume, recorded)


# ---------------------------------------------------------------------------------------------------- fit


@dataclass
class Fitted:
    """A fitted run: its module, trainer, callbacks, loggers and the ``run_info.json`` record."""

    module: QwenFTModule
    trainer: pl.Trainer
    callbacks: list
    loggers: list
    info: dict


def fit(cfg: DictConfig, run_dir: Path, pre: Preflight, built: Built, splits: Splits) -> Fitted:
    """Module, callbacks and trainer; ``run_info.json`` and ``config.yaml``; then Lightning's fit."""
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = QwenFTModule(built.model, instantiate(cfg.optim), scheduler, cfg.tokenizer.rows_lr, built.tokenizer,
                          built.loaded.instruct, built.words, head_loss=str(cfg.get("head_loss", "dense")),
                          head_loss_chunk=int(cfg.get("head_loss_chunk", 4096)))
    if pre.resume.ckpt is not None:  # whatever else shapes the tensors: still before anything is written
        check_resume_tensors(pre.resume.shapes, module.state_dict(), pre.resume.ckpt)
    rundir.accept()  # the resume checks passed: from here on this run writes its run dir
    for note in recover(run_dir) + recover(run_dir / "checkpoints"):
        log.info("run dir: %s (left by an interrupted process)", note)
    loggers = build_loggers(cfg)
    monitors: dict[str, dict] = {}
    inputs = RunInputs(built.tokenizer, list(built.words), built.loaded.instruct, splits.heldout.texts,
                       splits.test.texts if splits.test is not None else [], clinical_records(splits.val))
    callbacks = [*build_callbacks(cfg, monitor_fallback(cfg, built.words, splits.heldout), bool(loggers), monitors,
                                  inputs), RunIdentity(pre.data_sha256, checkpoint_shape(cfg))]
    if splits.val is not None and validation_due(pre.resume.step, cfg.trainer, run_dir / "history.jsonl"):
        callbacks.append(ValidateOnResume(pre.resume.step))  # killed during that step's validation: redo it
    trainer = build_trainer(cfg, callbacks, loggers, run_dir, splits.val is not None)
    info = record_run(cfg, run_dir, pre, built, splits, module, trainer, monitors, loggers)
    ckpt = pre.resume.ckpt
    try:
        if cfg.validate_before and splits.val is not None and ckpt is None:
            trainer.validate(module, datamodule=splits.module, verbose=False)  # the zero-shot numbers to start from
        trainer.fit(module, datamodule=splits.module, ckpt_path=str(ckpt) if ckpt else None)
    except SIGTERMException:  # Lightning's own handler (before our callback takes over) would exit 0
        raise Interrupted(signal.SIGTERM, f"SIGTERM before training started; nothing was exported (run dir "
                                          f"{run_dir})") from None
    stopped = next((c for c in callbacks if isinstance(c, SaveOnSignal) and c.received is not None), None)
    if stopped is not None:  # the weights of step N are not the final model: no export, no metrics.json
        name = Interrupted(stopped.received, "").signal_name
        raise Interrupted(stopped.received, f"{name} at step {trainer.global_step}: saved {stopped.ckpt_path}; "
                                            f"nothing was exported. Resume with the same command plus "
                                            f"ckpt_path=last run_dir={run_dir}")
    return Fitted(module, trainer, callbacks, loggers, info)


def record_run(cfg: DictConfig, run_dir: Path, pre: Preflight, built: Built, splits: Splits, module: QwenFTModule,
               trainer: pl.Trainer, monitors: dict, loggers: list) -> dict:
    """``run_info.json`` (what this run is: data, words, trainable parameters, monitors) and ``config.yaml``."""
    info = run_info(cfg, pre.data_sha256)
    if pre.resume.previous_data is not None:  # allow_data_change=true: the change is on record, not silent
        info["previous_data_sha256"] = pre.resume.previous_data
    info.update(trainable_summary(built.model), tokenizer_sha256=module.tokenizer_sha256, words=len(built.words),
                new_tokens=len(built.new_ids), world_size=trainer.world_size,
                data={k: v.stats for k, v in splits.items()},
                heldout=splits.heldout.record(built.words, new_word_metrics_texts(cfg)), monitors=monitors,
                words_report=(built.manifest or {}).get("words_report"))
    if trainer.global_rank == 0:
        atomic_write_text(run_dir / "run_info.json", json.dumps(info, indent=2))
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        for lg in loggers:
            lg.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True), "run_info": info})
    return info


# ------------------------------------------------------------------------------------------------- finish


def finish(cfg: DictConfig, run_dir: Path, run: Fitted, built: Built, splits: Splits) -> dict:
    """The final metrics, the test split, and the export (or ``metrics.json`` alone when export is off)."""
    trainer, module = run.trainer, run.module
    new_word = next((c for c in run.callbacks if isinstance(c, NewWordMetrics)), None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) or isinstance(v, float)}
    if new_word is not None:
        metrics.update({k: v for k, v in new_word.latest.items() if k not in metrics})
    metrics.update({"global_step": trainer.global_step, "train/avg_tokens_per_s": module.avg_tokens_per_s,
                    "data/train_pad_fraction_epoch": splits.module.train_loader.pad_fraction()})
    if splits.test is not None:
        metrics.update(run_test(trainer, module, splits.module, run.callbacks))
    for split, prepared in splits.items():  # over-long examples are never silent: counted in every run's metrics
        metrics[f"data/{split}_overlong"] = prepared.overlong
        metrics[f"data/{split}_dropped"] = prepared.dropped
        metrics[f"data/{split}_windowed"] = prepared.stats.get("windowed", 0)  # raw text cut, not truncated
    if trainer.global_rank != 0:
        return metrics
    if not cfg.export.enabled:
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        return metrics
    # all or nothing: tokenizer/, adapter/, merged/ and metrics.json move in together; a SIGTERM before that is
    # one line (exit 143) and leaves the previous outputs as they were
    with ExportSignals(run_dir) as guard:
        which = str(cfg.export.get("checkpoint", "last"))
        if which == "best":
            metrics["export/checkpoint"] = load_best(module, run.callbacks)
        card = model_card(base_model=built.loaded.name, manifest=built.manifest, run_info=run.info, metrics=metrics,
                          config=cfg, checkpoint=which)
        try:
            metrics["outputs"] = export(built.model, built.tokenizer, run_dir, built.manifest,
                                        adapter=cfg.export.adapter, card=card, metrics=metrics, guard=guard)
        except OutputError:  # a full disk: keep the run's numbers; `qwenft export RUN_DIR` redoes the rest
            with contextlib.suppress(OutputError):
                atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
            raise
    publish(cfg.export, run_dir, run.loggers)
    return metrics


# ------------------------------------------------------------------------------------------ building blocks


def clinical_records(val: Prepared | None) -> list[dict]:
    """The clinical validation records ``ClinicalEval`` answers (none when the split is not clinical)."""
    return list(val.source.records) if val is not None and val.source.schema == "clinical" else []


def build_callbacks(cfg: DictConfig, fallback: str | None, has_loggers: bool,
                    monitors: dict[str, dict] | None = None, inputs: RunInputs | None = None) -> list[pl.Callback]:
    """Every entry of ``cfg.callbacks`` with a ``_target_`` (``conf/callbacks/*.yaml``); ``null`` entries are off.

    Two adjustments that follow from the run rather than from taste: when ``val/new_word_nll`` will not be
    logged (``fallback`` says why: no new words, or none in the held-out text) the best checkpoint monitors
    ``val/loss``, and the LR monitor needs a logger. ``monitors`` receives what each checkpoint callback
    monitors, and why (``run_info.json``). A callback with ``connect`` gets the run's ``inputs`` as it is built.
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
        if inputs is not None and callable(getattr(callback, "connect", None)):
            callback.connect(inputs)
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
    try:
        trainer.test(module, datamodule=data, ckpt_path=best.best_model_path if best else None, verbose=False)
    except SIGTERMException:  # Lightning's handler (our SaveOnSignal is a fit-time callback) would exit 0
        raise Interrupted(signal.SIGTERM, f"SIGTERM while scoring the test split, after training ended at step "
                                          f"{trainer.global_step}: nothing was exported; `qwenft export "
                                          f"{trainer.default_root_dir}` exports the last checkpoint") from None
    module.load_state_dict(final, strict=False)
    out = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    out["test/checkpoint"] = str(best.best_model_path) if best else "last"
    log.info("test split (%s checkpoint): %s", "best" if best else "last",
             ", ".join(f"{k}={v:.4g}" for k, v in out.items() if isinstance(v, float)))
    return out


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
    recorded = info.get("words_report") if isinstance(info.get("words_report"), dict) else None
    built = build_model(cfg, split_texts(sources["train"], cfg.strategy.name), recorded=recorded)  # no re-scoring
    saved = state.get("qwenft_tokenizer_sha256")
    if saved is not None and saved != tokenizer_sha256(built.tokenizer):
        raise UserError(f"{ckpt}: trained with another tokenizer than this run's config rebuilds (data or words "
                        "changed since)")
    load_trained(built.model, state, ckpt)
    metrics = run_metrics(run_dir)
    metrics["global_step"] = state.get("global_step", metrics.get("global_step"))
    card = model_card(base_model=built.loaded.name, manifest=built.manifest, run_info=info, metrics=metrics,
                      config=cfg, checkpoint=checkpoint)
    out = export(built.model, built.tokenizer, run_dir, built.manifest, adapter=bool(cfg.export.get("adapter", True)),
                 card=card)
    export_cfg = OmegaConf.merge(cfg.export, {"push_to_hub": cfg.export.get("push_to_hub", False)
                                              if push_to_hub is None else push_to_hub, "checkpoint": checkpoint})
    publish(export_cfg, run_dir, [])
    return out


def load_trained(model, state: dict, ckpt: Path) -> None:  # noqa: ANN001 - the wrapped model
    """The checkpoint's trainable tensors into ``model``: every one must fit, name for name and size for size."""
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
