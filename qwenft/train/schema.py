"""Schemas of ``qwenft train`` (``conf/train.yaml`` and its ``optim``, ``scheduler``, ``trainer``, ``callbacks``,
``logger`` groups, whose objects Lightning, torch and transformers build with ``_target_``) and of ``qwenft
export``: each key's rule and one-line doc, declared once. The other groups' schemas live beside their code and
are composed here, so ``rules_of(TrainSchema)`` is every rule a training run is checked against."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig

from qwenft.adapters.schema import PeftSpec
from qwenft.clinical.generation_settings import GenerationSchema
from qwenft.clinical.strategies import StrategySchema
from qwenft.data.schema import DataSchema
from qwenft.model.schema import ModelSchema
from qwenft.rules import BOOL, OPT_BOOL, OPT_TEXT, SEED, TEXT, Enum, Float, Int, Rule, group, setting
from qwenft.tokenizer.schema import TokenizerConfig

HEAD_LOSSES = ("dense", "chunked", "liger", "auto")  # qwenft.train.head_loss
PRECISIONS = (64, 32, 16, "64", "32", "16", "bf16", "transformer-engine", "transformer-engine-float16", "16-true",
              "16-mixed", "bf16-true", "bf16-mixed", "32-true", "64-true")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "hpu", "auto")


def _batches_or_fraction(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1
    return isinstance(v, float) and 0 < v <= 1


def _devices(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1 or v == -1
    if isinstance(v, str):
        return v == "auto" or v == "-1" or bool(re.fullmatch(r"\d+(,\s*\d+)*,?", v.strip()))
    return isinstance(v, list | ListConfig) and len(v) > 0 and all(isinstance(x, int) and x >= 0 for x in v)


def _betas(v: Any) -> bool:
    return isinstance(v, list | ListConfig) and len(v) == 2 and all(
        isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in v)


BATCHES = Rule("any", null=True, check=_batches_or_fraction, text="an integer >= 1 (batches) or a fraction in (0, 1]")


@dataclass(kw_only=True)
class OptimSchema:
    """``optim``: a torch optimizer built with ``_target_`` (``_partial_``: the module adds the parameters)."""

    lr: float = setting(rule=Float(0, 10, lo_open=True), doc="learning rate of the body (LoRA or all weights)")
    weight_decay: float = setting(rule=Float(0, 10), doc="decoupled weight decay")
    eps: float = setting(rule=Float(0, 1, lo_open=True), doc="Adam's epsilon")
    betas: list[float] = setting(rule=Rule("any", check=_betas, text="two numbers in [0, 1), e.g. [0.9,0.999]"),
                                 doc="Adam's betas")
    momentum: float = setting(rule=Float(0, 1, hi_open=True), doc="SGD's momentum")


@dataclass(kw_only=True)
class SchedulerSchema:
    """``scheduler``: a transformers schedule built with ``_target_``."""

    num_warmup_steps: int = setting(rule=Int(0, 10**9), doc="steps of linear warm-up")
    min_lr_rate: float = setting(rule=Float(0, 1), doc="cosine: the floor, a fraction of the peak rate")
    num_cycles: float = setting(rule=Float(0, 1000, lo_open=True), doc="cosine: half-waves over the run")


@dataclass(kw_only=True)
class TrainerSchema:
    """``trainer``: ``pytorch_lightning.Trainer``'s arguments that qwenft sets or a user commonly overrides."""

    accelerator: Any = setting(rule=Rule("any", check=lambda v: isinstance(v, DictConfig) or v in ACCELERATORS,
                                         text=f"one of: {', '.join(ACCELERATORS)}"), doc="where the run trains")
    devices: Any = setting(rule=Rule("any", check=_devices, text="an integer >= 1, -1 (all), auto, or a list of ids"),
                           doc="devices per node")
    num_nodes: int = setting(rule=Int(1, 100000), doc="machines")
    precision: Any = setting(rule=Enum(*PRECISIONS), doc="Lightning's precision (default: bf16-mixed where the CPU "
                                                         "has native bf16)")
    max_steps: int = setting(rule=Int(1, 10**12, also=(-1,)), doc="optimizer steps (-1: by epochs)")
    max_epochs: int | None = setting(rule=Int(1, 10**9, also=(-1,), null=True), doc="epochs (-1: by steps)")
    min_steps: int | None = setting(rule=Int(0, 10**12, null=True), doc="steps before an early stop may stop")
    val_check_interval: Any = setting(rule=BATCHES, doc="training batches between validations")
    check_val_every_n_epoch: int | None = setting(rule=Int(1, 10**9, null=True), doc="epochs between validations")
    num_sanity_val_steps: int = setting(rule=Int(-1, 10**9), doc="validation batches before training")
    accumulate_grad_batches: int = setting(rule=Int(1, 1 << 16), doc="batches a step")
    gradient_clip_val: float | None = setting(rule=Float(0, 1e9, null=True), doc="gradient clipping (null: none)")
    gradient_clip_algorithm: str | None = setting(rule=Enum("norm", "value", null=True), doc="norm | value")
    log_every_n_steps: int = setting(rule=Int(1, 10**9), doc="steps between logged metrics")
    deterministic: Any = setting(rule=Rule("any", null=True, check=lambda v: isinstance(v, bool) or v == "warn",
                                           text="true, false or warn"), doc="deterministic algorithms")
    use_distributed_sampler: bool = setting(rule=BOOL, doc="Lightning's sampler (qwenft's loader splits batches "
                                                           "itself)")
    enable_checkpointing: bool | None = setting(rule=OPT_BOOL, doc="the checkpoint callbacks")
    limit_train_batches: Any = setting(rule=BATCHES, doc="training batches an epoch")
    limit_val_batches: Any = setting(rule=Rule("any", null=True, check=lambda v: v == 0 or _batches_or_fraction(v),
                                               text="0, an integer >= 1 (batches) or a fraction in (0, 1]"),
                                     doc="validation batches")


@dataclass(kw_only=True)
class CheckpointSchema:
    """Every ``ModelCheckpoint`` of ``callbacks`` (``last_checkpoint``, ``best_checkpoint``, one of yours)."""

    every_n_train_steps: int | None = setting(rule=Int(0, 10**9, null=True), doc="steps between saves")
    save_top_k: int = setting(rule=Int(-1, 10**6), doc="best checkpoints kept (-1: all)")
    mode: str = setting(rule=Enum("min", "max"), doc="whether the monitored value is better low or high")
    monitor: str | None = setting(rule=OPT_TEXT, doc="the logged value that ranks checkpoints")
    save_last: Any = setting(rule=Rule("any", null=True, check=lambda v: isinstance(v, bool) or v == "link",
                                       text="true, false or link"), doc="keep last.ckpt")


@dataclass
class NewWordMetricsSchema:
    """``callbacks.new_word_metrics`` (``qwenft.train.callbacks.NewWordMetrics``)."""

    max_texts: int = setting(32, Int(0, 10**6), "held-out texts scored at each validation")


@dataclass
class ClinicalEvalSchema:
    """``callbacks.clinical_eval`` (``qwenft.train.callbacks.ClinicalEval``)."""

    n_prompts: int = setting(4, Int(0, 10**5), "clinical val records answered at each validation (0: off)")
    generation: GenerationSchema = group(GenerationSchema)


@dataclass
class LrMonitorSchema:
    """``callbacks.lr_monitor`` (Lightning's ``LearningRateMonitor``)."""

    logging_interval: str | None = setting("step", Enum("step", "epoch", null=True), "step | epoch")


@dataclass
class CallbacksSchema:
    """``callbacks``: one file of the group per callback, built with ``_target_``."""

    checkpoints: CheckpointSchema = group(CheckpointSchema, key="*")
    new_word_metrics: NewWordMetricsSchema = group(NewWordMetricsSchema)
    clinical_eval: ClinicalEvalSchema = group(ClinicalEvalSchema)
    lr_monitor: LrMonitorSchema = group(LrMonitorSchema)


@dataclass
class WandbSchema:
    """``logger.wandb`` (Lightning's ``WandbLogger``)."""

    offline: bool = setting(True, BOOL, "write the run locally (wandb sync uploads it later)")
    log_model: Any = setting(False, Rule("any", check=lambda v: isinstance(v, bool) or v == "all",
                                         text="true, false or all"), "checkpoints as W&B artifacts")
    resume: str | None = setting(None, Enum("allow", "must", "never", "auto", null=True), "with id: continue that run")


@dataclass
class LoggerSchema:
    """``logger``: one file of the group per logger, built with ``_target_``."""

    wandb: WandbSchema = group(WandbSchema)


@dataclass
class ExportSchema:
    """``export`` in ``conf/train.yaml``: what a finished run writes (``qwenft.train.export``)."""

    enabled: bool = setting(True, BOOL, "tokenizer/, adapter/, merged/ and a model card in the run dir")
    adapter: bool = setting(True, BOOL, "also the adapter alone")
    checkpoint: str = setting("last", Enum("last", "best"), "the final weights, or the best by the monitor")
    push_to_hub: bool = setting(False, BOOL, "upload merged/ (+ adapter/) to hub_repo_id")
    hub_repo_id: str | None = setting(None, OPT_TEXT, "user/name on the hub")
    private: bool = setting(True, BOOL, "a private hub repository")
    wandb_artifact: bool = setting(False, BOOL, "merged/ and adapter/ as a W&B model artifact")
    license: str | None = setting("apache-2.0", OPT_TEXT, "the model card's license (null: none)")


@dataclass(kw_only=True)
class TrainSchema:
    """``conf/train.yaml``: ``qwenft train``."""

    seed: int = setting(0, SEED, "seed of everything random in the run")
    run_dir: str | None = setting(None, OPT_TEXT, "where the run writes (null: Hydra's run dir)")
    ckpt_path: str | None = setting(None, OPT_TEXT, "resume: last, a run dir, or a .ckpt path")
    allow_data_change: bool = setting(False, BOOL, "resume on data whose sha256 differs from the checkpoint's")
    validate_before: bool = setting(True, BOOL, "a validation at step 0: the zero-shot numbers")
    objective: str = setting("val/new_word_nll", TEXT, "what the run returns to a sweeper (minimised)")
    eval_words_file: str | None = setting(None, OPT_TEXT, "words scored even without extension (ablations)")
    gradient_checkpointing: bool = setting(False, BOOL, "trade compute for activation memory")
    compile: bool = setting(False, BOOL, "torch.compile each decoder layer")
    frozen_dtype: str = setting("auto", Enum("auto", "float32", "bfloat16"), "dtype of the frozen base weights")
    head_loss: str = setting("auto", Enum(*HEAD_LOSSES), "how the loss over the vocabulary is computed")
    head_loss_chunk: int = setting(4096, Int(1, 1 << 24), "label positions per chunk (head_loss=chunked)")
    log_text: bool = setting(False, BOOL, "clinical text goes to W&B only when true")
    export: ExportSchema = group(ExportSchema)
    model: ModelSchema = group(ModelSchema)
    data: DataSchema = group(DataSchema)
    optim: OptimSchema = group(OptimSchema)
    scheduler: SchedulerSchema = group(SchedulerSchema)
    peft: PeftSpec = group(PeftSpec)
    tokenizer: TokenizerConfig = group(TokenizerConfig)
    trainer: TrainerSchema = group(TrainerSchema)
    callbacks: CallbacksSchema = group(CallbacksSchema)
    strategy: StrategySchema = group(StrategySchema)
    logger: LoggerSchema = group(LoggerSchema)


@dataclass(kw_only=True)
class ExportVerbSchema:
    """``conf/export.yaml``: ``qwenft export RUN_DIR``."""

    run_dir: str = setting(rule=TEXT, doc="the train run to export")
    checkpoint: str = setting("last", Enum("last", "best"), "which of its checkpoints")
    push_to_hub: bool | None = setting(None, OPT_BOOL, "null: as the run's export.push_to_hub")
