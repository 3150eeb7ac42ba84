"""The head's cross-entropy without holding every label position's logits at once (``head_loss`` in train.yaml).

Qwen2.5's head is 151 936 wide: at 16k label tokens a step's logits are 4.9 GB in bf16, 9.7 GB as the fp32 copy the
loss reads, and as much again for their gradient. Three ways to compute the same mean cross-entropy:

* ``dense`` (today's and the CPU default): the head over every label position, then ``F.cross_entropy``;
* ``chunked``: ``chunk`` label positions at a time, each chunk under ``torch.utils.checkpoint`` so its logits are
  freed after the forward and recomputed in the backward. Works for every head qwenft builds (plain, tied, PEFT's
  trainable-token rows, ``modules_to_save``) because it calls the head module itself; peak memory is one chunk's
  logits, the price one extra head matmul in the backward;
* ``liger``: Liger-Kernel's fused linear + cross-entropy (Triton, CUDA only), which computes the gradients during
  the forward, chunk by chunk, and never keeps logits. It needs the head as one weight matrix: trainable-token rows
  are folded in with ``index_copy`` (differentiable, so the rows still get their gradient).

``auto`` picks ``liger`` on CUDA when it is installed, ``chunked`` on CUDA otherwise, and ``dense`` on CPU, where
the logits of a batch are small and the recomputation would only cost time.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from qwenft.errors import UserError

log = logging.getLogger(__name__)


def liger_available() -> bool:
    try:
        import liger_kernel.transformers  # noqa: F401
    except Exception:  # not installed, or no Triton on this machine
        return False
    return True


def resolve(mode: str, device: torch.device | str) -> str:
    """``auto`` -> what pays on ``device``; ``liger`` where it cannot run is refused with the reason."""
    cuda = torch.device(device).type == "cuda"
    if mode == "auto":
        return ("liger" if liger_available() else "chunked") if cuda else "dense"
    if mode == "liger" and not (cuda and liger_available()):
        raise UserError("head_loss=liger: needs a CUDA device and `pip install liger-kernel`; use chunked elsewhere")
    return mode


def dense(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="mean")


def _chunk_sum(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


def chunked(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Sum of per-chunk losses over the count; each chunk's logits live only inside its checkpoint."""
    n = hidden.shape[0]
    if n <= chunk:  # one chunk: nothing to save by recomputing
        return dense(head, hidden, targets)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        total = total + checkpoint(_chunk_sum, head, hidden[sl], targets[sl], use_reentrant=False)
    return total / n


def head_weight(head: nn.Module) -> torch.Tensor | None:
    """The head as one ``[vocab, hidden]`` matrix that gradients reach the trained parts through, or None when the
    head is something else (LoRA on lm_head, merged or multi-adapter states): callers fall back to ``chunked``."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
    from peft.utils.other import ModulesToSaveWrapper, TrainableTokensWrapper

    if isinstance(head, TrainableTokensWrapper):
        head = head.token_adapter
    if isinstance(head, ModulesToSaveWrapper):
        if head.disable_adapters or len(head.active_adapters) != 1:
            return None
        head = head.modules_to_save[head.active_adapters[0]]
    if isinstance(head, TrainableTokensLayer):
        active = head.active_adapters
        if head.disable_adapters or head.merged or len(active) != 1:
            return None
        base, delta = head.get_base_layer(), head.trainable_tokens_delta[active[0]]
        ids = torch.as_tensor(head.token_indices[active[0]], device=base.weight.device)
        return base.weight.index_copy(0, ids, delta.to(base.weight.dtype))
    if type(head) is nn.Linear and head.bias is None:
        return head.weight
    return None


def liger(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    weight = head_weight(head)
    if weight is None:
        return chunked(head, hidden, targets, chunk)
    if torch.is_autocast_enabled(hidden.device.type):  # the matmuls in the autocast dtype, as dense() gets them
        dtype = torch.get_autocast_dtype(hidden.device.type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    return LigerFusedLinearCrossEntropyLoss(reduction="mean")(weight, hidden, targets)


def head_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, mode: str = "dense",
              chunk: int = 4096) -> torch.Tensor:
    """Mean cross-entropy of ``head(hidden)`` against ``targets`` (``hidden`` is ``[n, d]``, label positions only);
    ``mode`` is already resolved (see :func:`resolve`)."""
    if mode == "chunked":
        return chunked(head, hidden, targets, chunk)
    if mode == "liger":
        return liger(head, hidden, targets, chunk)
    return dense(head, hidden, targets)
