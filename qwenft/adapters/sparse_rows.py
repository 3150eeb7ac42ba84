"""PEFT's trainable tokens with a forward that touches only the trained rows.

PEFT 0.21 rebuilds the whole matrix every forward (``W.index_copy(0, ids, delta)``) and back-propagates a dense
gradient through it -- a zero-filled 151 936 x 896 gradient for the embedding, a full weight gradient for the
head -- to update a few dozen rows. On the offline 0.5B model that is 22 % of a CPU training step and about
1.6 GB of transient memory (torch.profiler, README "Benchmarks"). This layer keeps PEFT's parameters, state
dict, merge/unmerge and weight tying (it only changes the class of the wrapped modules), and computes the same
function from the frozen matrix plus the delta rows:

* embedding: look up the frozen rows, then put the delta rows at the positions holding a trained id;
* head: frozen logits, then the trained ids' columns replaced by ``x @ delta.T``.

Merged, disabled or multi-adapter states fall back to PEFT's own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from torch import nn


class RowSparseTrainableTokens(TrainableTokensLayer):
    """Same parameters and checkpoints as ``TrainableTokensLayer``; gradients reach only the delta rows."""

    def forward_adapters(self, x: torch.Tensor, active_adapters, *args, **kwargs) -> torch.Tensor:  # noqa: ANN001
        if self.disable_adapters or self.merged or len(active_adapters) != 1:
            return super().forward_adapters(x, active_adapters, *args, **kwargs)
        name = active_adapters[0]
        base = self.get_base_layer()
        delta = self.trainable_tokens_delta[name]
        ids = torch.as_tensor(self.token_indices[name], device=base.weight.device)
        if isinstance(base, nn.Embedding):
            out = F.embedding(x, base.weight, base.padding_idx, base.max_norm, base.norm_type,
                              base.scale_grad_by_freq, base.sparse)
            slot = torch.full((base.num_embeddings,), -1, dtype=torch.long, device=x.device)
            slot[ids] = torch.arange(len(ids), device=x.device)
            slot = slot[x]
            hit = slot >= 0  # always index, even with no hit, so DDP sees delta used every step
            out = out.index_put((hit,), delta[slot[hit]].to(out.dtype))
            scale = self._get_embed_scale()
            return out if scale is None else out * scale.to(out.dtype)
        if isinstance(base, nn.Linear):  # the head, tied or not (PEFT's forward applies no bias either)
            out = F.linear(x, base.weight)
            return out.index_copy(-1, ids, F.linear(x, delta.to(base.weight.dtype)).to(out.dtype))
        return super().forward_adapters(x, active_adapters, *args, **kwargs)


def use_row_sparse_forward(model: nn.Module) -> nn.Module:
    """Switch every PEFT trainable-tokens layer of ``model`` to :class:`RowSparseTrainableTokens`, in place."""
    for module in model.modules():
        if type(module) is TrainableTokensLayer:
            module.__class__ = RowSparseTrainableTokens
    return model
