"""The head's loss computed in chunks (and the single matrix Liger would read) equals today's dense loss, and so do
the gradients it sends to the hidden states, the head's trainable rows or weight, and the LoRA parameters."""

from __future__ import annotations

import pytest
import torch

from qwenft.adapters.apply import PeftSpec, apply_peft
from qwenft.data.datamodule import collate
from qwenft.data.format import encode_example
from qwenft.errors import UserError
from qwenft.model.sources import tiny
from qwenft.tokenizer.extend import extend_model
from qwenft.train.head_loss import chunked, dense, head_weight, resolve
from qwenft.train.module import backbone_and_head, label_loss

CASES = [(True, "lora", "new_rows"), (False, "lora", "new_rows"), (False, "full", "new_rows"),
         (True, "lora", "all"), (False, "lora", "all"), (True, "lora", "frozen")]


def _wrapped(demo_words, tied: bool, method: str, rows: str):
    loaded = tiny(tie_word_embeddings=tied)
    ext = extend_model(loaded.model, loaded.tokenizer, demo_words, init="random", glosses={}, capitalized=False,
                       seed=0)
    model = apply_peft(loaded.model, PeftSpec(method=method, r=4, alpha=8, dropout=0.0), ext.new_ids, rows).train()
    with torch.no_grad():  # move rows and adapters off their init (LoRA B starts at 0: its A would get no gradient)
        gen = torch.Generator().manual_seed(1)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    examples = [{**encode_example(ext.tokenizer, {"prompt": f"Define {i}:", "completion": " ".join(demo_words[i:])},
                                  True), "index": i} for i in range(3)]
    batch = collate(examples, ext.tokenizer.pad_token_id)
    batch.pop("index")
    return model, batch


def _grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("tied,method,rows", CASES)
def test_chunked_loss_and_gradients_equal_the_dense_ones(demo_words, tied, method, rows):
    model, batch = _wrapped(demo_words, tied, method, rows)
    ref, n = label_loss(model, batch)  # today's path
    ref_grads = _grads(model, ref)
    assert any("lora_" in k for k in ref_grads) or method == "full"
    assert any(m in k for k in ref_grads for m in ("trainable_tokens_delta", "modules_to_save")) or rows == "frozen"
    ours, n2 = label_loss(model, batch, head_loss="chunked", chunk=5)  # several chunks, the last one short
    assert n2 == n and n > 3 * 5 and n % 5
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=0)
    grads = _grads(model, ours)
    assert grads.keys() == ref_grads.keys()
    for k in ref_grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-5, atol=1e-7, msg=k)


@pytest.mark.parametrize("tied,method,rows", CASES)
def test_the_single_head_matrix_gives_the_heads_logits_and_gradients(demo_words, tied, method, rows):
    """What the Liger path multiplies by: the frozen matrix with the trained rows (or the trained copy) folded in."""
    model, batch = _wrapped(demo_words, tied, method, rows)
    _, head = backbone_and_head(model)
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(11, 64, generator=gen, requires_grad=True)  # model=tiny: hidden size 64
    targets = torch.randint(0, 151_936, (11,), generator=gen)
    targets[:3] = torch.tensor(list(getattr(head, "token_adapter", head).token_indices["default"])[:3]) \
        if rows == "new_rows" else targets[:3]  # some targets among the new rows
    ref = dense(head, h, targets)
    ref_grads = _grads(model, ref)
    ref_h = h.grad.clone()
    h.grad = None
    weight = head_weight(head)
    assert weight is not None and weight.shape == (151_936, h.shape[1])
    ours = torch.nn.functional.cross_entropy(h @ weight.T, targets)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=0)
    grads = _grads(model, ours)
    torch.testing.assert_close(h.grad, ref_h, rtol=1e-5, atol=1e-7)
    assert grads.keys() == ref_grads.keys() and (ref_grads or rows == "frozen")
    for k in ref_grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-5, atol=1e-7, msg=k)


def test_chunked_matches_dense_under_bf16_autocast(demo_words):
    model, batch = _wrapped(demo_words, True, "lora", "new_rows")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref, _ = label_loss(model, batch)
        ours, _ = label_loss(model, batch, head_loss="chunked", chunk=5)
    torch.testing.assert_close(ours, ref, rtol=1e-3, atol=0)  # chunk sums vs one mean, both over bf16 logits


def test_one_chunk_is_the_dense_loss():
    head = torch.nn.Linear(8, 50, bias=False)
    h, t = torch.randn(6, 8), torch.randint(0, 50, (6,))
    assert torch.equal(chunked(head, h, t, chunk=6), dense(head, h, t))


def test_modes_resolve_by_device():
    assert resolve("auto", "cpu") == "dense" and resolve("chunked", "cpu") == "chunked"
    assert resolve("auto", "cuda") in ("liger", "chunked")
    with pytest.raises(UserError, match="head_loss=liger: needs a CUDA device"):
        resolve("liger", "cpu")
