"""One training run: load -> extend the vocabulary -> wrap (LoRA / full, trainable rows) -> fit -> export.

The order matters and is fixed here: the new rows must exist before PEFT decides what trains, and PEFT must
wrap the model before the optimizer sees its parameters. Every data file is loaded and validated before the
model is, and tokenized before ``trainer.fit``, so a bad file costs seconds, not a run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.adapters.apply import PeftSpec, apply_peft, trainable_summary
from qwenft.atomic import atomic_write_text
from qwenft.data.datamodule import TrainData, load_splits, prepare, split_texts
from qwenft.data.text import read_texts
from qwenft.errors import UserError
from qwenft.tokenizer.discover import discover_words
from qwenft.tokenizer.extend import extend_model, read_words_file, words_from_config
from qwenft.train.callbacks import NewWordMetrics
from qwenft.train.export import export, model_card, publish
from qwenft.train.module import QwenFTModule
from qwenft.train.runinfo import run_info

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


def extend_vocabulary(cfg: DictConfig, loaded, train_texts: list[str]):
    """Add the configured (or discovered) words; returns ``(tokenizer, new_ids, words, manifest)``."""
    if not cfg.tokenizer.extend:
        words = read_words_file(cfg.eval_words_file)[0] if cfg.get("eval_words_file") else []
        return loaded.tokenizer, [], words, None  # ablations: the words are still scored, as their old pieces
    if cfg.tokenizer.discover:
        found = discover_words(train_texts, loaded.tokenizer, **cfg.tokenizer.discover)
        words, glosses = [c.word for c in found], {}
        log.info("discovered %d words in the training data: %s", len(words), ", ".join(words[:20]))
    else:
        words, glosses = words_from_config(cfg.tokenizer)
    ext = extend_model(loaded.model, loaded.tokenizer, words, init=cfg.tokenizer.init, glosses=glosses,
                       capitalized=cfg.tokenizer.capitalized, seed=cfg.seed)
    return ext.tokenizer, ext.new_ids, ext.words, ext.manifest()


def wrap_model(cfg: DictConfig, model, new_ids: list[int]):
    model = apply_peft(model, PeftSpec(**OmegaConf.to_container(cfg.peft)), new_ids,
                       str(cfg.tokenizer.trainable_rows) if cfg.tokenizer.extend else "frozen")
    if cfg.get("gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not any(p.requires_grad for n, p in model.named_parameters() if "embed_tokens" in n):
            model.enable_input_require_grads()  # frozen embeddings would otherwise cut the graph
    return model.train()  # from_pretrained returns eval mode; LoRA dropout must be active while training


def build_callbacks(cfg: DictConfig, has_words: bool, has_loggers: bool) -> list[pl.Callback]:
    """Every entry of ``cfg.callbacks`` with a ``_target_`` (``conf/callbacks/*.yaml``); ``null`` entries are off.

    Two adjustments that follow from the run rather than from taste: without new words the best checkpoint
    monitors ``val/loss`` (there is no new-word NLL to monitor), and the LR monitor needs a logger.
    """
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        if node.get("monitor") == "val/new_word_nll" and not has_words:
            log.info("callbacks.%s: no new words in this run, monitoring val/loss instead", name)
            node = OmegaConf.merge(node, {"monitor": "val/loss"})
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
    best = next((c for c in callbacks if isinstance(c, pl.callbacks.ModelCheckpoint) and c.monitor
                 and c.best_model_path), None)
    if best is None:
        raise UserError("export.checkpoint=best: no best checkpoint was saved (callbacks.best_checkpoint is off, "
                        "or no validation ran)")
    state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state, strict=False)
    log.info("exporting the best checkpoint %s (%s=%.4f)", best.best_model_path, best.monitor,
             float(best.best_model_score))
    return str(best.best_model_path)


def train(cfg: DictConfig, run_dir: str | Path | None = None, handles: dict | None = None) -> dict:
    """The whole run; returns the final metrics (also written to ``metrics.json``).

    ``handles``, if given, receives the trained ``module``, the ``tokenizer`` and the ``trainer`` (benchmarks,
    notebooks).
    """
    run_dir = Path(run_dir or cfg.get("run_dir") or cfg.paths.output_dir)
    if str(run_dir) != str(cfg.paths.output_dir):  # loggers and callbacks write under paths.output_dir
        cfg = OmegaConf.merge(cfg, {"paths": {"output_dir": str(run_dir)}})
    run_dir.mkdir(parents=True, exist_ok=True)
    log.info("run dir: %s", run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    sources = load_splits(cfg.data)  # fail on bad input before loading a model
    ckpt = resolve_ckpt(cfg.ckpt_path, run_dir)
    strategy = cfg.strategy.name

    loaded = instantiate(cfg.model)
    tokenizer, new_ids, words, manifest = extend_vocabulary(cfg, loaded, split_texts(sources["train"], strategy))
    train_set = prepare(sources["train"], tokenizer, loaded.instruct, cfg.data, strategy)
    val_set = prepare(sources["val"], tokenizer, loaded.instruct, cfg.data, strategy) if "val" in sources else None
    heldout = val_set.texts if val_set else train_set.texts[:32]
    if cfg.data.heldout_text:
        heldout = read_texts(cfg.data.heldout_text)

    model = wrap_model(cfg, loaded.model, new_ids)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = QwenFTModule(model, instantiate(cfg.optim), scheduler, cfg.tokenizer.rows_lr, tokenizer, loaded.instruct,
                          words)
    data = TrainData(train_set, val_set, batch_size=cfg.data.batch_size, pad_id=tokenizer.pad_token_id,
                     seed=cfg.seed, packing=bool(cfg.data.get("packing", False)),
                     max_val_examples=cfg.data.max_val_examples, heldout_texts=heldout)
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, bool(words), bool(loggers))
    trainer = build_trainer(cfg, callbacks, loggers, run_dir, val_set is not None)

    info = run_info(cfg, {k: v.sha256 for k, v in sources.items()})
    info.update(trainable_summary(model), tokenizer_sha256=module.tokenizer_sha256, words=len(words),
                new_tokens=len(new_ids), world_size=trainer.world_size,
                data={"train": train_set.stats, **({"val": val_set.stats} if val_set else {})})
    if trainer.global_rank == 0:
        atomic_write_text(run_dir / "run_info.json", json.dumps(info, indent=2))
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        for lg in loggers:
            lg.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True), "run_info": info})
    if cfg.validate_before and val_set is not None and ckpt is None:
        trainer.validate(module, datamodule=data, verbose=False)  # the zero-shot numbers the run starts from
    trainer.fit(module, datamodule=data, ckpt_path=str(ckpt) if ckpt else None)
    if handles is not None:
        handles.update(module=module, tokenizer=tokenizer, trainer=trainer)

    new_word = next((c for c in callbacks if isinstance(c, NewWordMetrics)), None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) or isinstance(v, float)}
    if new_word is not None:
        metrics.update({k: v for k, v in new_word.latest.items() if k not in metrics})
    metrics.update({"global_step": trainer.global_step, "train/avg_tokens_per_s": module.avg_tokens_per_s,
                    "data/train_pad_fraction_epoch": data.train_loader.pad_fraction()})
    for split, prepared in (("train", train_set), ("val", val_set)):
        if prepared is not None:  # over-long examples are never silent: counted in every run's metrics
            metrics[f"data/{split}_overlong"] = prepared.overlong
            metrics[f"data/{split}_dropped"] = prepared.dropped
    if trainer.global_rank == 0:
        if cfg.export.enabled:
            which = str(cfg.export.get("checkpoint", "last"))
            if which == "best":
                metrics["export/checkpoint"] = load_best(module, callbacks)
            card = model_card(base_model=loaded.name, manifest=manifest, run_info=info, metrics=metrics,
                              config=cfg, checkpoint=which)
            metrics["outputs"] = export(model, tokenizer, run_dir, manifest, adapter=cfg.export.adapter, card=card)
            publish(cfg.export, run_dir, loggers)
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


def export_run(run_dir: str | Path, checkpoint: str = "last", push_to_hub: bool | None = None) -> dict[str, str]:
    """Re-export a finished or interrupted run from one of its checkpoints (``qwenft export RUN_DIR``).

    The run's own ``config.yaml`` rebuilds the model exactly as training did (same words, same rows, same
    adapter); the checkpoint's trainable weights go in; the tokenizer hash recorded in the checkpoint must match.
    """
    from qwenft.train.runinfo import tokenizer_sha256

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"run_dir={run_dir}: no config.yaml here (not a `qwenft train` run directory)")
    if checkpoint not in ("last", "best"):
        raise UserError(f"checkpoint={checkpoint!r}: use last or best")
    ckpt = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.is_file():
        raise UserError(f"checkpoint={checkpoint}: {ckpt} does not exist")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    sources = load_splits(cfg.data)
    loaded = instantiate(cfg.model)
    tokenizer, new_ids, words, manifest = extend_vocabulary(cfg, loaded, split_texts(sources["train"], cfg.strategy.name))
    saved = state.get("qwenft_tokenizer_sha256")
    if saved is not None and saved != tokenizer_sha256(tokenizer):
        raise UserError(f"{ckpt}: trained with another tokenizer than this run's config rebuilds (data or words "
                        "changed since)")
    model = wrap_model(cfg, loaded.model, new_ids)
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    missing = set(weights) - {n for n, _ in model.named_parameters()}
    if missing:
        raise UserError(f"{ckpt}: {len(missing)} tensors do not fit this run's model (e.g. {sorted(missing)[0]})")
    model.load_state_dict(weights, strict=False)
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    metrics["global_step"] = state.get("global_step", metrics.get("global_step"))
    info = json.loads((run_dir / "run_info.json").read_text()) if (run_dir / "run_info.json").is_file() else {}
    card = model_card(base_model=loaded.name, manifest=manifest, run_info=info, metrics=metrics, config=cfg,
                      checkpoint=checkpoint)
    out = export(model, tokenizer, run_dir, manifest, adapter=bool(cfg.export.get("adapter", True)), card=card)
    export_cfg = OmegaConf.merge(cfg.export, {"push_to_hub": cfg.export.get("push_to_hub", False)
                                              if push_to_hub is None else push_to_hub, "checkpoint": checkpoint})
    publish(export_cfg, run_dir, [])
    return out
