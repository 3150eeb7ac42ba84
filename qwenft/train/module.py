"""The LightningModule: completion-only loss with logits computed only where labels exist.

Qwen2.5's head is 151 936 wide (~27 % of a 0.5B step's FLOPs at full length). Prompt positions carry no loss,
so the backbone's hidden states are gathered at the positions whose next token is a label and only those rows go
through the head. The module works on any model ``qwenft.adapters.apply`` returns (LoRA, trainable rows, full FT;
tied or untied): PEFT injects its layers in place, so the inner ``Qwen2Model`` and ``lm_head`` already route
through them.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from peft import PeftModel

from qwenft.adapters.apply import param_groups
from qwenft.data.format import IGNORE
from qwenft.train.head_loss import head_loss as head_ce
from qwenft.train.head_loss import resolve as resolve_head_loss
from qwenft.train.runinfo import tokenizer_sha256


def backbone_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    inner = model.get_base_model() if isinstance(model, PeftModel) else model
    return inner.model, inner.get_output_embeddings()


def label_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], head_loss: str = "dense",
               chunk: int = 4096) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over label positions, computing the head only at those positions.

    ``head_loss`` (resolved, see ``qwenft.train.head_loss``): ``dense`` holds those positions' logits at once,
    ``chunked``/``liger`` ``chunk`` positions at a time.
    """
    backbone, head = backbone_and_head(model)
    # packed batches carry position_ids and no attention_mask (see qwenft.data.datamodule); transformers only
    # reads the restarts as boundaries when there is no KV cache, hence use_cache=False (which training wants anyway)
    hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                      position_ids=batch.get("position_ids"), use_cache=False).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    n = int(keep.sum())
    if head_loss == "dense":  # today's path, kept verbatim: CPU runs compute exactly what they did
        return F.cross_entropy(head(hidden[:, :-1][keep]).float(), targets[keep], reduction="mean"), n
    return head_ce(head, hidden[:, :-1][keep], targets[keep], head_loss, chunk), n


def fused_kwargs(factory: Callable, groups: list[dict]) -> dict:
    """AdamW's multi-tensor update when the config chose neither ``fused`` nor ``foreach``: ``fused=True`` when every
    trained parameter is on CUDA (one kernel for the whole update; LoRA on the 0.5B model has 336 small tensors),
    ``foreach=True`` on CPU, where torch's default is a per-tensor loop. On CPU the result is bitwise the same
    (``tests/test_speed.py``) and the update of those 336 tensors took 566 instead of 790 ms (2 shared cores)."""
    func = getattr(factory, "func", factory)
    chosen = getattr(factory, "keywords", {})
    if func is not torch.optim.AdamW or chosen.get("fused") is not None or chosen.get("foreach") is not None:
        return {}
    params = [p for g in groups for p in g["params"]]
    if not params or not all(p.is_floating_point() for p in params):
        return {}
    if all(p.is_cuda for p in params):
        return {"fused": True}
    return {"foreach": True} if all(p.device.type == "cpu" for p in params) else {}


class QwenFTModule(pl.LightningModule):
    """Wraps whatever ``apply_peft`` returned; owns the loss, the optimizer groups and what checkpoints carry.

    Checkpoints hold only the trainable parameters (the frozen 0.5B weights come from the model config), plus the
    tokenizer's sha256 so that a resume with different rows is refused instead of silently misaligned.
    """

    def __init__(self, model: torch.nn.Module, optimizer: Callable, scheduler: Callable | None, rows_lr: float,
                 tokenizer, instruct: bool = True, words: list[str] | None = None, head_loss: str = "dense",
                 head_loss_chunk: int = 4096) -> None:
        super().__init__()
        self.model = model
        self.head_loss, self.head_loss_chunk = head_loss, head_loss_chunk  # train.yaml head_loss (auto: by device)
        self._head_loss_resolved = False
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler  # partials: conf/optim, conf/scheduler
        self.rows_lr = rows_lr
        # what config-built callbacks read in their setup(): the (extended) tokenizer, the format, the new words
        self.tokenizer, self.instruct, self.words = tokenizer, instruct, list(words or [])
        self.tokenizer_sha256 = tokenizer_sha256(tokenizer)
        self.seen: list[int] = []  # example indices this rank trained on (the DDP test checks they are disjoint)
        self.strict_loading = False  # checkpoints hold only the trainable parameters
        self._t = None
        self._tok_sum, self._time_sum, self._steps_seen = 0, 0.0, 0

    def forward(self, **batch):
        return self.model(**batch)

    def _loss(self, batch) -> tuple[torch.Tensor, int]:
        if not self._head_loss_resolved:  # auto: decided once the model is on its device
            self.head_loss = resolve_head_loss(self.head_loss, batch["input_ids"].device)
            self._head_loss_resolved = True
        return label_loss(self.model, batch, self.head_loss, self.head_loss_chunk)

    def training_step(self, batch, batch_idx):
        loss, n = self._loss(batch)
        mask = batch.get("attention_mask")
        total = batch["input_ids"].numel()
        if "num_tokens" in batch:  # packed rows under a token budget: their pad tails are not tokens
            self._nonpad = int(batch["num_tokens"])
        else:
            self._nonpad = int(mask.sum()) if mask is not None else total  # packed: no padding at all
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=n)
        self.log("train/label_tokens", float(n), on_step=True, reduce_fx="sum", batch_size=1)
        self.log("train/pad_fraction", 1.0 - self._nonpad / total, on_step=True, batch_size=1)
        if self._trainer is not None and self.trainer.optimizers:  # in history.jsonl too, not only in the logger
            for g in self.trainer.optimizers[0].param_groups:
                if g.get("name") in ("body", "rows"):
                    self.log(f"train/lr_{g['name']}", g["lr"], on_step=True, batch_size=1)
        if "index" in batch:
            self.seen += batch["index"].tolist()
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "step_done"):
            # here, not in on_train_batch_end: checkpoint callbacks run before the module's batch-end hook
            datamodule.step_done()
        return loss

    @property
    def train_loader(self):
        """The loader this rank trains from (benchmarks take a real batch from it)."""
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        return getattr(datamodule, "train_loader", None)

    def on_train_batch_start(self, batch, batch_idx):
        self._t = time.perf_counter()

    @property
    def avg_tokens_per_s(self) -> float:
        """Non-pad tokens per second over every step but the first (warm-up), for benchmarks and metrics."""
        return self._tok_sum / self._time_sum if self._time_sum else float("nan")

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self._t is not None:
            dt = time.perf_counter() - self._t
            if self._steps_seen > 0:
                self._tok_sum += self._nonpad
                self._time_sum += dt
            self._steps_seen += 1
            self.log("train/tokens_per_s", self._nonpad / max(time.perf_counter() - self._t, 1e-9), on_step=True,
                     batch_size=1, prog_bar=True)

    def validation_step(self, batch, batch_idx):
        loss, n = self._loss(batch)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)

    def test_step(self, batch, batch_idx):
        """The test split after fit (``trainer.test`` with the best checkpoint): the same loss as validation."""
        loss, n = label_loss(self.model, batch)
        self.log("test/loss", loss, on_epoch=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        """Body and new rows as two AdamW groups; the schedule steps every optimizer step to ``max_steps``."""
        body = self.optimizer_factory.keywords if hasattr(self.optimizer_factory, "keywords") else {}
        groups = param_groups(self.model, lr=body.get("lr", 1e-3), rows_lr=self.rows_lr,
                              weight_decay=body.get("weight_decay", 0.0))
        opt = self.optimizer_factory(groups, **fused_kwargs(self.optimizer_factory, groups))
        if self.scheduler_factory is None:
            return opt
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        kwargs = {"num_training_steps": total} if "num_training_steps" in inspect.signature(
            self.scheduler_factory.func if hasattr(self.scheduler_factory, "func") else self.scheduler_factory
        ).parameters else {}
        warmup = getattr(self.scheduler_factory, "keywords", {}).get("num_warmup_steps")
        if warmup is not None and warmup >= total:  # a warm-up longer than the run would never reach the lr
            kwargs["num_warmup_steps"] = max(total - 1, 0)
        sched = self.scheduler_factory(opt, **kwargs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def state_dict(self, *args, **kwargs):
        """Only what trains: a LoRA checkpoint of the 0.5B model is megabytes, not gigabytes."""
        full = super().state_dict(*args, **kwargs)
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in full.items() if k in trainable}

    def on_save_checkpoint(self, checkpoint):
        checkpoint["qwenft_tokenizer_sha256"] = self.tokenizer_sha256
        checkpoint["qwenft_torch_rng"] = torch.get_rng_state()  # LoRA dropout continues as if never stopped

    def on_load_checkpoint(self, checkpoint):
        from qwenft.errors import UserError

        saved = checkpoint.get("qwenft_tokenizer_sha256")
        if saved is not None and saved != self.tokenizer_sha256:
            raise UserError(
                f"checkpoint was trained with a different tokenizer (sha256 {saved[:12]}…, now "
                f"{self.tokenizer_sha256[:12]}…): resume with the same model/tokenizer config"
            )
        if "qwenft_torch_rng" in checkpoint:
            torch.set_rng_state(checkpoint["qwenft_torch_rng"])
