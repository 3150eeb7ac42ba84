"""All the texts a prompt needs, generated in ONE batched ``generate`` call (left padding, KV cache)."""

from __future__ import annotations

import torch

from qwenft.data.format import prompt_ids


@torch.inference_mode()
def generate_batch(model, tokenizer, prompts: list[str], instruct: bool, max_new_tokens: int = 64,
                   do_sample: bool = False, temperature: float = 0.7, top_p: float = 0.9,
                   bf16: bool = True) -> list[str]:
    """Instruct models read the chat template, base models the plain template; greedy unless ``do_sample``."""
    if not prompts:
        return []
    seqs = [prompt_ids(tokenizer, [{"role": "user", "content": p}], instruct) for p in prompts]
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad, eos_token_id=eos)
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and ids.device.type == "cpu"):
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
