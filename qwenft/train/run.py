"""``qwenft train``: load -> extend the vocabulary -> wrap (LoRA / full, trainable rows) -> fit -> export.

The order matters and is fixed here: the new rows must exist before PEFT decides what trains, and PEFT must
wrap the model before the optimizer sees its parameters. Every data file is loaded and validated before the
model is, and tokenized before ``trainer.fit``, so a bad file costs seconds, not a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.atomic import atomic_write_text
from qwenft.data.datamodule import TrainData, load_splits, prepare, split_texts
from qwenft.errors import UserError
from qwenft.peft.apply import PeftSpec, apply_peft, trainable_summary
from qwenft.tokenizer.discover import discover_words
from qwenft.tokenizer.extend import extend_model, read_words_file, words_from_config
from qwenft.train.callbacks import History, KillAtStep, NewWordMetrics, SaveOnSignal, clinical_eval
from qwenft.train.checkpoint_io import AtomicCheckpointIO
from qwenft.train.export import export
from qwenft.train.module import QwenFTModule
from qwenft.train.runinfo import make_logger, run_info, tokenizer_sha256

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
    if cfg.trainer.get("gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not any(p.requires_grad for n, p in model.named_parameters() if "embed_tokens" in n):
            model.enable_input_require_grads()  # frozen embeddings would otherwise cut the graph
    return model.train()  # from_pretrained returns eval mode; LoRA dropout must be active while training


def trainer_kwargs(cfg: DictConfig, has_val: bool) -> dict:
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    kwargs.pop("_target_", None)
    kwargs.pop("gradient_checkpointing", None)  # qwenft's key, not Lightning's
    if isinstance(kwargs.get("strategy"), dict):  # e.g. conf/trainer/fsdp.yaml: a strategy object
        kwargs["strategy"] = instantiate(cfg.trainer.strategy)
    if not has_val:
        kwargs["limit_val_batches"] = 0
    return kwargs


def rank_state(module: QwenFTModule) -> dict:
    """What the DDP test compares: the examples this rank trained on, and a hash of its trainable weights."""
    h = hashlib.sha256()
    for name, p in sorted(module.model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return {"examples": sorted(set(module.seen)), "params_sha256": h.hexdigest()}


def train(cfg: DictConfig, run_dir: str | Path | None = None, handles: dict | None = None) -> dict:
    """The whole run; returns the final metrics (also written to ``metrics.json``).

    ``handles``, if given, receives the trained ``module``, the ``tokenizer`` and the ``trainer`` (benchmarks,
    notebooks).
    """
    run_dir = Path(run_dir or cfg.get("run_dir") or cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    sources = load_splits(cfg.data)  # fail on bad input before loading a model
    ckpt = resolve_ckpt(cfg.ckpt_path, run_dir)
    strategy = cfg.decomposition.name

    loaded = instantiate(cfg.model)
    tokenizer, new_ids, words, manifest = extend_vocabulary(cfg, loaded, split_texts(sources["train"], strategy))
    train_set = prepare(sources["train"], tokenizer, loaded.instruct, cfg.data, strategy)
    val_set = prepare(sources["val"], tokenizer, loaded.instruct, cfg.data, strategy) if "val" in sources else None
    heldout = val_set.texts if val_set else train_set.texts[:32]
    if cfg.data.heldout_text:
        from qwenft.data.text import read_texts

        heldout = read_texts(cfg.data.heldout_text)

    model = wrap_model(cfg, loaded.model, new_ids)
    module = QwenFTModule(model, cfg.optim, cfg.tokenizer.rows_lr, tokenizer_sha256(tokenizer))
    data = TrainData(train_set, val_set, batch_size=cfg.data.batch_size, pad_id=tokenizer.pad_token_id,
                     seed=cfg.seed, packing=bool(cfg.data.get("packing", False)),
                     max_val_examples=cfg.data.max_val_examples)

    callbacks = [
        pl.callbacks.ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="{step}", save_last=True,
                                     save_top_k=1, every_n_train_steps=cfg.callbacks.checkpoint_every,
                                     enable_version_counter=False),  # last.ckpt is always the latest
        History(run_dir / "history.jsonl"),
        SaveOnSignal(run_dir / "checkpoints" / "last.ckpt"),
    ]
    if cfg.callbacks.progress_bar:
        callbacks.append(pl.callbacks.RichProgressBar())
    if os.environ.get("QWENFT_KILL_AT_STEP"):
        callbacks.append(KillAtStep(int(os.environ["QWENFT_KILL_AT_STEP"])))
    new_word = NewWordMetrics(heldout, words, tokenizer, cfg.callbacks.new_word_max_texts) \
        if words and cfg.callbacks.new_word_ppl else None
    clinical = clinical_eval(cfg, val_set.source.records if val_set and val_set.source.schema == "clinical" else None,
                             tokenizer, loaded.instruct, words)
    callbacks += [c for c in (new_word, clinical) if c is not None]
    logger = make_logger(cfg, run_dir)
    if logger:
        callbacks.append(pl.callbacks.LearningRateMonitor(logging_interval="step"))
    trainer = pl.Trainer(**trainer_kwargs(cfg, val_set is not None), callbacks=callbacks, logger=logger,
                         default_root_dir=str(run_dir), plugins=[AtomicCheckpointIO()],
                         enable_progress_bar=cfg.callbacks.progress_bar, use_distributed_sampler=False)

    info = run_info(cfg, {k: v.sha256 for k, v in sources.items()})
    info.update(trainable_summary(model), tokenizer_sha256=module.tokenizer_sha256, words=len(words),
                new_tokens=len(new_ids), world_size=trainer.world_size,
                data={"train": train_set.stats, **({"val": val_set.stats} if val_set else {})})
    if trainer.global_rank == 0:
        atomic_write_text(run_dir / "run_info.json", json.dumps(info, indent=2))
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        if logger:
            logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True), "run_info": info})
    if cfg.validate_before and val_set is not None and ckpt is None:
        trainer.validate(module, datamodule=data, verbose=False)  # the zero-shot numbers the run starts from
    trainer.fit(module, datamodule=data, ckpt_path=str(ckpt) if ckpt else None)
    if cfg.dump_rank_state:
        atomic_write_text(run_dir / f"rank{trainer.global_rank}.json", json.dumps(rank_state(module)))
    if handles is not None:
        handles.update(module=module, tokenizer=tokenizer, trainer=trainer)

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
            metrics["outputs"] = export(model, tokenizer, run_dir, manifest, adapter=cfg.export.adapter)
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def train_steps(overrides: list[str], steps: int, run_dir: str | Path) -> dict:
    """Benchmarks and notebooks: compose ``conf/train.yaml`` with ``overrides``, train ``steps`` steps, return stats.

    Runs without Hydra's runtime (no ``.hydra/`` folder); the stats are those of ``metrics.json``, including
    ``train/avg_tokens_per_s`` (non-pad tokens/s, first step excluded) and ``train/pad_fraction``.
    """
    from hydra import compose, initialize_config_dir

    from qwenft.cli import conf_dir

    overrides = [*overrides, f"trainer.max_steps={steps}", f"paths.output_dir={run_dir}"]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return train(cfg, run_dir=run_dir)


def run(cfg: DictConfig) -> float | None:
    """CLI body; returns the sweep objective (``objective`` key of the final metrics) for Optuna."""
    metrics = train(cfg)
    value = metrics.get(cfg.objective)
    print(json.dumps({k: v for k, v in metrics.items() if k != "outputs"}, indent=2))
    return value
