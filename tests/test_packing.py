"""Batches by token budget (data.tokens_per_batch): the budget holds, every example is seen once an epoch, packed
rows give each example the loss it has alone, and a resumed loader continues with exactly the batches left."""

from __future__ import annotations

import pytest
import torch
from trainutil import token_losses

from qwenft.config import compose
from qwenft.data.datamodule import ResumableLoader, collate
from qwenft.data.format import IGNORE, encode_example
from qwenft.data.packing import budget_batches, collate_rows, first_fit, row_length
from qwenft.model.sources import tiny
from qwenft.train.module import label_loss
from qwenft.validation import problems


@pytest.fixture(scope="module")
def tok():
    return tiny().tokenizer


def _examples(tok, n: int = 60) -> list[dict]:
    return [{**encode_example(tok, {"prompt": "q " * (k * 7 % 40 + 1), "completion": "a " * (k % 9 + 1)}, True),
             "index": k} for k in range(n)]


@pytest.mark.parametrize("packed", [True, False])
def test_the_budget_holds_and_every_example_is_seen_once(tok, packed):
    examples = _examples(tok)
    longest = max(len(e["input_ids"]) for e in examples)
    budget, row = 6 * longest, 2 * longest
    loader = ResumableLoader(examples, 4, tok.pad_token_id, seed=0, packing=packed, tokens_per_batch=budget,
                             pack_length=row)
    pad_fraction = loader.pad_fraction()  # of the coming epoch
    batches = list(loader)
    assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(len(examples)))
    real = sum(len(e["input_ids"]) for e in examples)
    for b in batches:
        assert b["input_ids"].numel() <= budget and b["input_ids"].shape[1] <= (row if packed else longest)
    if packed:
        assert all("attention_mask" not in b for b in batches)
        assert sum(int(b["num_tokens"]) for b in batches) == real
        assert len(batches) < len(examples) / 4  # fuller steps than batch_size=4 would give
    slots = sum(b["input_ids"].numel() for b in batches)
    assert pad_fraction == pytest.approx(1 - real / slots)
    assert pad_fraction < (0.1 if packed else 0.3)


def test_without_a_budget_the_loader_is_unchanged(tok):
    examples = _examples(tok, 24)
    a = [b["index"].tolist() for b in ResumableLoader(examples, 4, tok.pad_token_id, seed=3)]
    b = [b["index"].tolist() for b in ResumableLoader(examples, 4, tok.pad_token_id, seed=3, tokens_per_batch=None,
                                                      pack_length=64)]
    assert a == b and all(len(x) == 4 for x in a)


def test_first_fit_and_budget_cut_agree():
    lengths = [5, 9, 3, 7, 2, 8, 1, 6, 4, 10]
    batches = budget_batches(lengths, 20, packed=True, pack_length=10, seed=None)
    for b in batches:
        rows = first_fit([lengths[i] for i in b], 10)
        assert len(rows) <= 2 and all(sum(lengths[b[i]] for i in r) <= 10 for r in rows)
    assert [i for b in batches for i in b] == list(range(len(lengths)))  # no seed: the examples' order


def test_resume_mid_epoch_continues_with_the_same_batches(tok):
    examples = _examples(tok)
    kw = dict(packing=True, tokens_per_batch=256, pack_length=128)
    first = ResumableLoader(examples, 4, tok.pad_token_id, seed=5, **kw)
    full = list(first)
    second = ResumableLoader(examples, 4, tok.pad_token_id, seed=5, **kw)
    it = iter(second)
    for _ in range(3):
        next(it)
        second.step_done()
    state = second.state_dict()
    resumed = ResumableLoader(examples, 4, tok.pad_token_id, seed=5, **kw)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(full) - 3
    for a, b in zip(rest, full[3:], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_give_each_example_its_own_loss(attn):
    """Several rows, pad tails included: the per-token losses equal those of a padded batch of the same examples."""
    loaded = tiny()
    model, tok = loaded.model.eval(), loaded.tokenizer
    model.set_attn_implementation(attn)
    examples = _examples(tok, 9)
    packed = collate_rows(examples, pack_length=max(len(e["input_ids"]) for e in examples) + 5, pad_id=0)
    assert packed["input_ids"].shape[0] > 1 and (packed["labels"] == IGNORE).any()
    assert int(packed["num_tokens"]) < packed["input_ids"].numel()  # some row has a pad tail
    by_index = {e["index"]: e for e in examples}
    padded = collate([by_index[i] for i in packed["index"].tolist()], tok.pad_token_id)  # same order
    padded.pop("index")
    with torch.no_grad():
        together, alone = token_losses(model, packed), token_losses(model, padded)
        torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
        (ours, n), (ref, m) = label_loss(model, packed), label_loss(model, padded)
    assert n == m == together.numel()
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.max_length=512", "data.tokens_per_batch=256"], "data.tokens_per_batch=256: must be >= data.max_length=512"),
    (["data.max_length=128", "data.tokens_per_batch=1024", "data.pack_length=64"], "data.pack_length=64: must be >="),
    (["data.max_length=128", "data.tokens_per_batch=256", "data.pack_length=512"], "data.pack_length=512: must be <="),
])
def test_a_budget_that_cannot_hold_an_example_is_refused(overrides, message):
    found = problems(compose("train", ["model=tiny", *overrides]), "train")
    assert any(message in p for p in found), found


def test_flash_attention_gets_single_row_batches():
    """transformers' flash path reads position-id restarts only when the batch is one row."""
    assert row_length("flash_attention_2", 16384, 1024) == 16384
    assert row_length("sdpa", 16384, 1024) == row_length(None, 16384, 1024) == 1024
    assert row_length("flex_attention", 16384, 4096) == 4096
    import inspect

    from transformers.modeling_flash_attention_utils import _is_packed_sequence

    assert "batch_size != 1" in inspect.getsource(_is_packed_sequence)  # the limit this works around


@pytest.mark.slow  # three CLI runs: minutes on 2 CPU cores
def test_sigkill_then_resume_with_a_token_budget_matches_an_uninterrupted_run(tmp_path):
    import json

    from safetensors.torch import load_file
    from trainutil import TINY, qwenft

    args = [*TINY, "data.tokens_per_batch=384", "data.packing=true", "head_loss=chunked", "head_loss_chunk=32",
            "trainer.max_steps=6", "trainer.val_check_interval=100", "callbacks.last_checkpoint.every_n_train_steps=3"]
    a = qwenft("train", *args, f"hydra.run.dir={tmp_path}/a", cwd=tmp_path)
    assert a.returncode == 0, a.stderr[-3000:]
    killed = qwenft("train", *args, "+callbacks.kill._target_=hooks.KillAtStep", "+callbacks.kill.step=4",
                    f"hydra.run.dir={tmp_path}/b", cwd=tmp_path)
    assert killed.returncode == -9
    resumed = qwenft("train", *args, "ckpt_path=last", f"hydra.run.dir={tmp_path}/b", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in "ab")
    assert mb["global_step"] == ma["global_step"] == 6 and mb["train/loss"] == ma["train/loss"]
    wa, wb = (load_file(str(tmp_path / r / "adapter" / "adapter_model.safetensors")) for r in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
