"""``qwenft train``: load -> extend the vocabulary -> wrap (LoRA / full, trainable rows) -> fit -> export.

Every input is loaded and validated before the model is, so a bad file costs seconds, not a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from qwenft.atomic import atomic_write_text
from qwenft.data.datamodule import DEMO_DIR, ResumableLoader, prepare
from qwenft.data.io import load_records
from qwenft.errors import UserError
from qwenft.peft.apply import PeftSpec, apply_peft, trainable_summary
from qwenft.tokenizer.discover import discover_words
from qwenft.tokenizer.extend import extend_model, words_from_config
from qwenft.train.callbacks import History, KillAtStep, NewWordPerplexity, SaveOnSignal
from qwenft.train.checkpoint_io import AtomicCheckpointIO
from qwenft.train.export import export
from qwenft.train.module import QwenFTModule

log = logging.getLogger(__name__)
PACKAGES = ("torch", "transformers", "peft", "pytorch-lightning", "hydra-core", "tokenizers", "qwenft")


def tokenizer_sha256(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()


def run_info(cfg: DictConfig, data_hashes: dict[str, str]) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except OSError:
        commit = None
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return {"git_commit": commit, "python": platform.python_version(), "packages": versions,
            "data_sha256": data_hashes, "seed": cfg.seed}


def _paths(cfg: DictConfig) -> dict[str, Path | None]:
    d = cfg.data
    return {"train": Path(d.train_path) if d.train_path else DEMO_DIR / "train.jsonl",
            "val": Path(d.val_path) if d.val_path else (None if d.train_path else DEMO_DIR / "val.jsonl")}


def _logger(cfg: DictConfig, run_dir: Path):
    kind = cfg.logger.kind
    if kind == "none":
        return False
    if kind == "csv":
        return pl.loggers.CSVLogger(save_dir=str(run_dir), name="csv")
    if kind == "wandb":
        if cfg.logger.offline:
            os.environ["WANDB_MODE"] = "offline"
        return pl.loggers.WandbLogger(project=cfg.logger.project, save_dir=str(run_dir), offline=cfg.logger.offline,
                                      name=cfg.logger.get("name"), log_model=False)
    raise UserError(f"logger.kind={kind!r}: use wandb, csv or none")


def train(cfg: DictConfig, run_dir: str | Path | None = None, handles: dict | None = None) -> dict:
    """The whole run; returns the final metrics (also written to ``metrics.json``).

    ``handles``, if given, receives the trained ``module`` and the ``tokenizer`` (benchmarks, notebooks).
    """
    run_dir = Path(run_dir or cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    paths = _paths(cfg)
    checked = {name: load_records(p, schema=cfg.data.schema, skip_bad_rows=cfg.data.skip_bad_rows,
                                  columns=dict(cfg.data.columns) if cfg.data.columns else None)
               for name, p in paths.items() if p is not None}  # fail on bad input before loading a model
    ckpt = None
    if cfg.ckpt_path:
        ckpt = run_dir / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
        if not ckpt.exists():
            raise UserError(f"ckpt_path={cfg.ckpt_path}: {ckpt} does not exist")

    loaded = instantiate(cfg.model)
    tokenizer, new_ids, words, manifest = loaded.tokenizer, [], [], None
    strategy = cfg.decomposition.name
    if cfg.tokenizer.extend:
        if cfg.tokenizer.discover:
            texts = prepare(paths["train"], loaded.tokenizer, loaded.instruct, cfg.data, strategy).texts
            words = [c.word for c in discover_words(texts, loaded.tokenizer, **cfg.tokenizer.discover)]
            glosses = {}
        else:
            words, glosses = words_from_config(cfg.tokenizer)
        ext = extend_model(loaded.model, loaded.tokenizer, words, init=cfg.tokenizer.init, glosses=glosses,
                           capitalized=cfg.tokenizer.capitalized, seed=cfg.seed)
        tokenizer, new_ids, words, manifest = ext.tokenizer, ext.new_ids, ext.words, ext.manifest()
    if not words and cfg.eval_words_file:  # no extension: still score the words, as their original pieces
        from qwenft.tokenizer.extend import read_words_file

        words = read_words_file(cfg.eval_words_file)[0]
    train_set = prepare(paths["train"], tokenizer, loaded.instruct, cfg.data, strategy)
    val_set = prepare(paths["val"], tokenizer, loaded.instruct, cfg.data, strategy) if paths["val"] else None
    heldout = val_set.texts if val_set else train_set.texts[:32]
    if cfg.data.heldout_text:
        from qwenft.data.text import read_texts

        heldout = read_texts(cfg.data.heldout_text)

    model = apply_peft(loaded.model, PeftSpec(**OmegaConf.to_container(cfg.peft)), new_ids,
                       str(cfg.tokenizer.trainable_rows) if cfg.tokenizer.extend else "frozen")
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # frozen embeddings would otherwise cut the graph
    model.train()  # from_pretrained returns eval mode; LoRA dropout must be active while training
    module = QwenFTModule(model, cfg.optim, cfg.tokenizer.rows_lr, tokenizer_sha256(tokenizer))

    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_kwargs.pop("_target_", None)
    callbacks = [
        pl.callbacks.ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), every_n_train_steps=cfg.callbacks.checkpoint_every,
                                     save_last=True, save_top_k=1, filename="{step}"),
        History(run_dir / "history.jsonl"),
        SaveOnSignal(run_dir / "checkpoints" / "last.ckpt"),
    ]
    if cfg.callbacks.progress_bar:
        callbacks.append(pl.callbacks.RichProgressBar())
    if os.environ.get("QWENFT_KILL_AT_STEP"):
        callbacks.append(KillAtStep(int(os.environ["QWENFT_KILL_AT_STEP"])))
    if words and cfg.callbacks.new_word_ppl:
        callbacks.append(NewWordPerplexity(heldout, words, tokenizer, cfg.callbacks.new_word_max_texts))
    logger = _logger(cfg, run_dir)
    if logger:
        callbacks.append(pl.callbacks.LearningRateMonitor(logging_interval="step"))
    trainer = pl.Trainer(**trainer_kwargs, callbacks=callbacks, logger=logger,
                         default_root_dir=str(run_dir), plugins=[AtomicCheckpointIO()],
                         enable_progress_bar=cfg.callbacks.progress_bar, use_distributed_sampler=False)
    pad = tokenizer.pad_token_id
    train_loader = ResumableLoader(train_set.examples, cfg.data.batch_size, pad, cfg.seed,
                                   rank=trainer.global_rank, world_size=trainer.world_size)
    module.train_loader = train_loader
    val_examples = val_set.examples[: cfg.data.max_val_examples] if val_set else []
    val_loader = (ResumableLoader(val_examples, cfg.data.batch_size, pad, cfg.seed, shuffle=False,
                                  rank=trainer.global_rank, world_size=trainer.world_size) if val_examples else None)

    info = run_info(cfg, {k: v.sha256 for k, v in checked.items()})
    info.update(trainable_summary(model), data={"train": train_set.stats, **({"val": val_set.stats} if val_set else {})},
                words=len(words), new_tokens=len(new_ids), world_size=trainer.world_size)
    if trainer.global_rank == 0:
        atomic_write_text(run_dir / "run_info.json", json.dumps(info, indent=2))
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
        if trainer.logger and hasattr(trainer.logger, "log_hyperparams"):
            trainer.logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True), "run_info": info})
    if cfg.validate_before and val_loader is not None and ckpt is None:
        trainer.validate(module, val_loader, verbose=False)
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader,
                ckpt_path=str(ckpt) if ckpt else None)
    if cfg.dump_rank_state:  # for the DDP test: which examples this rank saw, and what it ended with
        h = hashlib.sha256()
        for name, p in sorted(model.named_parameters()):
            if p.requires_grad:
                h.update(name.encode())
                h.update(p.detach().float().cpu().numpy().tobytes())
        seen = sorted({i for b in train_loader._batches() for i in b})
        atomic_write_text(run_dir / f"rank{trainer.global_rank}.json",
                          json.dumps({"examples": seen, "params_sha256": h.hexdigest()}))

    if handles is not None:
        handles.update(module=module, tokenizer=tokenizer, trainer=trainer)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) or isinstance(v, float)}
    metrics["global_step"] = trainer.global_step
    metrics["train/avg_tokens_per_s"] = module.avg_tokens_per_s
    if trainer.global_rank == 0:
        if cfg.export.enabled:
            metrics["outputs"] = export(model, tokenizer, run_dir, manifest, adapter=cfg.export.adapter)
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def run(cfg: DictConfig) -> float | None:
    """CLI body; returns the sweep objective (``objective`` key of the final metrics) for Optuna."""
    metrics = train(cfg)
    value = metrics.get(cfg.objective)
    print(json.dumps({k: v for k, v in metrics.items() if k != "outputs"}, indent=2))
    return value
