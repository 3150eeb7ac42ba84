"""Wrap a (possibly extended) model for training according to ``conf/peft`` and the trainable-rows policy.

The naive recipe -- LoRA on q/v after ``resize_token_embeddings`` -- never updates the new rows: they stay at
their initial value for the whole run (``trainable_rows=frozen`` keeps that recipe for ablations). The default
``new_rows`` trains only the new rows of the input embeddings and, when the head is untied, of the output
matrix, through PEFT's trainable tokens (with a forward that touches only those rows:
``qwenft.adapters.sparse_rows``): every old row stays bit-identical and no second copy of the 136M-parameter matrix
is made. With tied embeddings ``ensure_weight_tying`` makes the head follow the input rows, so a merged,
reloaded model stays tied and keeps its trained rows.

``output_rows`` trains only the head's new rows and keeps the input rows as initialised: a distilled input row is
read like the word's pieces (``qwenft.model.distill``), and training moved it away from that while the head's row,
which decides when the word is written, still had to learn (``experiments/results/newword_real``). A tied model has
one shared row per word, which is the input row, so there ``output_rows`` trains no row (said in the log).
"""

from __future__ import annotations

import logging

import torch
from peft import LoraConfig, PeftModel, TrainableTokensConfig, get_peft_model
from transformers import PreTrainedModel

from qwenft.adapters.schema import PeftSpec
from qwenft.adapters.sparse_rows import use_row_sparse_forward
from qwenft.errors import UserError
from qwenft.model.rows import embeddings_tied

log = logging.getLogger(__name__)
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ROW_PARAM_MARKERS = ("trainable_tokens_delta", "embed_tokens", "lm_head")


def _row_targets(model: PreTrainedModel, new_ids: list[int], trainable_rows: str) -> dict[str, list[int]]:
    targets = {} if trainable_rows == "output_rows" else {"embed_tokens": list(new_ids)}
    if not embeddings_tied(model):
        targets["lm_head"] = list(new_ids)
    return targets


def apply_peft(
    model: PreTrainedModel,
    spec: PeftSpec,
    new_ids: list[int] | None = None,
    trainable_rows: str = "new_rows",
) -> PreTrainedModel | PeftModel:
    """Return the model to train; ``new_ids`` are the rows added by vocabulary extension (may be empty)."""
    new_ids = list(new_ids or [])
    tied = embeddings_tied(model)
    if trainable_rows == "output_rows" and tied and new_ids:
        log.warning("tokenizer.trainable_rows=output_rows on a tied model: its one row per word is the input row, "
                    "so no new row trains (as frozen)")
    targets = _row_targets(model, new_ids, trainable_rows) \
        if trainable_rows in ("new_rows", "output_rows") and new_ids else {}
    if trainable_rows in ("new_rows", "output_rows") and not targets:
        trainable_rows = "frozen"  # nothing new to train: same as the plain recipe
    if spec.method == "lora":
        kwargs: dict = {}
        if targets:
            kwargs["trainable_token_indices"] = targets
            kwargs["ensure_weight_tying"] = tied
        elif trainable_rows == "all":
            kwargs["modules_to_save"] = ["embed_tokens"] if tied else ["embed_tokens", "lm_head"]
            kwargs["ensure_weight_tying"] = tied
        config = LoraConfig(
            r=spec.r,
            lora_alpha=spec.alpha,
            lora_dropout=spec.dropout,
            target_modules=spec.target_modules or ALL_LINEAR,
            task_type="CAUSAL_LM",
            **kwargs,
        )
        try:
            wrapped = get_peft_model(model, config)
        except ValueError as err:  # PEFT's own refusal (no such module, an unsupported one): one line, not a trace
            raise UserError(f"peft.target_modules={spec.target_modules}: {str(err).splitlines()[0][:200]}") from None
        return use_row_sparse_forward(wrapped)
    if spec.method != "full":
        raise UserError(f"peft.method={spec.method!r}: choose lora or full")
    if targets:
        peft_model = get_peft_model(
            model, TrainableTokensConfig(target_modules=list(targets), token_indices=new_ids)
        )
        for name, p in peft_model.named_parameters():
            if not any(m in name for m in ("embed_tokens", "lm_head")):
                p.requires_grad_(True)
        return use_row_sparse_forward(peft_model)
    for name, p in model.named_parameters():
        is_rows = any(m in name for m in ("embed_tokens", "lm_head"))
        p.requires_grad_(trainable_rows == "all" or not is_rows)
    return model


def param_groups(model: torch.nn.Module, lr: float, rows_lr: float, weight_decay: float) -> list[dict]:
    """Embedding rows get their own learning rate and no weight decay (decay would move rows with no signal)."""
    rows, decay, no_decay = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if any(m in name for m in ROW_PARAM_MARKERS):
            rows.append(p)
        elif p.ndim < 2 or "norm" in name or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "body"},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "body_no_decay"},
        {"params": rows, "lr": rows_lr, "weight_decay": 0.0, "name": "rows"},
    ]
    return [g for g in groups if g["params"]]


def merged_model(model: torch.nn.Module) -> PreTrainedModel:
    """A plain transformers model with adapters and trainable rows folded in (what vLLM and pipelines load)."""
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    return model


def trainable_summary(model: torch.nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params_total": total, "params_trainable": trainable}
