"""The LightningModule: completion-only loss with logits computed only where labels exist.

Qwen2.5's head is 151 936 wide (~27 % of a 0.5B step's FLOPs at full length). Prompt positions carry no loss,
so the backbone's hidden states are gathered at the positions whose next token is a label and only those rows go
through the head. The module works on any model ``qwenft.peft.apply`` returns (LoRA, trainable rows, full FT;
tied or untied): PEFT injects its layers in place, so the inner ``Qwen2Model`` and ``lm_head`` already route
through them.
"""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from peft import PeftModel

from qwenft.data.format import IGNORE
from qwenft.peft.apply import param_groups


def backbone_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    inner = model.get_base_model() if isinstance(model, PeftModel) else model
    return inner.model, inner.get_output_embeddings()


def label_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Mean next-token cross-entropy over label positions, computing the head only at those positions."""
    backbone, head = backbone_and_head(model)
    hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    logits = head(hidden[:, :-1][keep])
    n = int(keep.sum())
    return F.cross_entropy(logits.float(), targets[keep], reduction="mean"), n


class QwenFTModule(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, optim_cfg, rows_lr: float, tokenizer_sha256: str) -> None:
        super().__init__()
        self.model = model
        self.optim_cfg = optim_cfg
        self.rows_lr = rows_lr
        self.tokenizer_sha256 = tokenizer_sha256
        self.train_loader = None  # set by the entry point; told about every trained batch (resumable epochs)
        self.strict_loading = False  # checkpoints hold only the trainable parameters
        self._t = None
        self._tok_sum, self._time_sum, self._steps_seen = 0, 0.0, 0

    def forward(self, **batch):
        return self.model(**batch)

    def training_step(self, batch, batch_idx):
        loss, n = label_loss(self.model, batch)
        mask = batch["attention_mask"]
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=n)
        self.log("train/label_tokens", float(n), on_step=True, reduce_fx="sum", batch_size=1)
        self.log("train/pad_fraction", 1.0 - float(mask.float().mean()), on_step=True, batch_size=1)
        self._nonpad = int(mask.sum())
        if self.train_loader is not None:
            # here, not in on_train_batch_end: checkpoint callbacks run before the module's batch-end hook
            self.train_loader.step_done()
        return loss

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
        loss, n = label_loss(self.model, batch)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        o = self.optim_cfg
        groups = param_groups(self.model, lr=o.lr, rows_lr=self.rows_lr, weight_decay=o.weight_decay)
        opt = torch.optim.AdamW(groups, betas=tuple(o.betas), eps=o.eps)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(int(o.warmup_steps), total - 1) if total > 1 else 0

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if o.scheduler == "constant":
                return 1.0
            progress = (step - warmup) / max(total - warmup, 1)
            return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
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
