"""All the texts one stage of a prompt needs, generated in ONE batched ``model.generate`` call.

A prompt of n questions needs n answers and a summary; generating them one call at a time re-reads the weights
n+1 times per new token, batched once per token. Sequences are left-padded (so every row's next token sits in the
last column) with an attention mask, and ``generate`` keeps its KV cache. Instruct models read the chat
template, base models the plain template of ``qwenft.data.format`` -- the same formatting training uses.

The n+1 prompts of one scenario share their first tokens (chat header + scenario), and prefilling that prefix
n+1 times is work that grows with the scenario. When the rows share at least ``MIN_SHARED_PREFIX`` tokens, it is run
once, its KV cache repeated across the batch, and each row continues as ``[prefix][pad...][own tokens]`` (pads
masked, positions from the mask, so every row sees exactly what it would see alone).
"""

from __future__ import annotations

import torch

from qwenft.data.format import prompt_ids

MIN_SHARED_PREFIX = 16  # below this the extra forward call is not worth making


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every sequence right-aligned."""
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def shared_prefix_length(seqs: list[list[int]]) -> int:
    """Tokens every sequence starts with, leaving each at least one token of its own (its first logits)."""
    n = min(map(len, seqs)) - 1
    for i in range(max(n, 0)):
        if any(s[i] != seqs[0][i] for s in seqs[1:]):
            return i
    return max(n, 0)


def prefix_then_left_pad(seqs: list[list[int]], shared: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[prefix][pad...][rest]`` per row: the prefix columns line up with one cached prefill, the rests are
    right-aligned so every row's next token still sits in the last column."""
    ids, mask = left_pad([s[shared:] for s in seqs], pad_id)
    prefix = torch.tensor(seqs[0][:shared], dtype=torch.long).expand(len(seqs), shared)
    return torch.cat([prefix, ids], 1), torch.cat([torch.ones_like(prefix), mask], 1)


def stop_ids(tokenizer) -> list[int]:
    """Both end markers: an Instruct model ends a turn with ``<|im_end|>``, a base model with ``<|endoftext|>``."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    return [i for i in ids if isinstance(i, int) and i >= 0]


def generated_lengths(rows: torch.Tensor, stops: list[int]) -> list[int]:
    """Tokens each row generated: up to and including its first end marker (the padding after it is not)."""
    out = []
    for row in rows.tolist():
        end = next((i for i, t in enumerate(row) if t in stops), None)
        out.append(len(row) if end is None else end + 1)
    return out


@torch.inference_mode()
def generate_batch(model, tokenizer, prompts: list[str], instruct: bool, max_new_tokens: int = 64,
                   do_sample: bool = False, temperature: float = 0.7, top_p: float = 0.9, bf16: bool = True,
                   seed: int = 0, counts: list | None = None) -> list[str]:
    """One user message per prompt -> one completion per prompt, in order, from a single ``generate`` call.
    ``counts`` (a list) gets (prompt tokens, generated tokens) per row appended: the costs ``evaluate`` reports."""
    if not prompts:
        return []
    seqs = [prompt_ids(tokenizer, [{"role": "user", "content": p}], instruct) for p in prompts]
    shared = shared_prefix_length(seqs) if len(seqs) > 1 else 0
    if shared >= MIN_SHARED_PREFIX:
        ids, mask = prefix_then_left_pad(seqs, shared, tokenizer.pad_token_id)
    else:
        shared, (ids, mask) = 0, left_pad(seqs, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    kwargs: dict = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=stop_ids(tokenizer), use_cache=True)
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
        torch.manual_seed(seed)
    else:  # silence the checkpoint's sampling defaults, which greedy decoding ignores anyway
        kwargs.update(temperature=None, top_p=None, top_k=None)
    was_training = model.training
    model.eval()
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cpu"):
            if shared:  # one prefill of the common prefix, its cache shared by every row
                # logits_to_keep=1: the head (151 936 wide) only for the last prefix position, which is all a
                # cache needs; over the whole prefix it would cost prefix x vocab floats (18 GB for 200 KB)
                cache = model(input_ids=ids[:1, :shared], use_cache=True, logits_to_keep=1).cache
                cache.batch_repeat_interleave(len(seqs))
                kwargs["cache"] = cache
            out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    finally:
        model.train(was_training)
    width = ids.shape[1]
    if counts is not None:
        counts.extend(zip(map(len, seqs), generated_lengths(out[:, width:], stop_ids(tokenizer)), strict=True))
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
