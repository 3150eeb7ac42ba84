"""Examples -> token ids with the loss on the completion only.

Instruct models see the Qwen2.5 chat template; base models a plain template. Prompt and completion are tokenized
separately and concatenated, so the prompt/completion boundary is exact by construction (both templates end the
prompt with a newline, where the Qwen2 pre-tokenizer would cut anyway). The completion ends with EOS:
``<|im_end|>`` for Instruct, ``<|endoftext|>`` for base models.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

IGNORE = -100
BASE_TEMPLATE = "### Question:\n{prompt}\n\n### Answer:\n"


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict], instruct: bool) -> list[int]:
    """The tokens a model reads before it answers (also used for generation)."""
    if instruct:
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)
    text = "\n\n".join(m["content"] for m in messages if m["role"] != "system")
    return tokenizer(BASE_TEMPLATE.format(prompt=text), add_special_tokens=False).input_ids


def encode_example(tokenizer: PreTrainedTokenizerBase, record: dict, instruct: bool) -> dict:
    """``{prompt, completion}`` or ``{messages}`` -> ``{input_ids, labels}`` (prompt positions = -100)."""
    if "messages" in record:
        messages, completion = record["messages"][:-1], record["messages"][-1]["content"]
    else:
        messages, completion = [{"role": "user", "content": record["prompt"]}], record["completion"]
    p = prompt_ids(tokenizer, messages, instruct)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>" if instruct else "<|endoftext|>")
    c = tokenizer(completion, add_special_tokens=False).input_ids + [eos]
    return {"input_ids": p + c, "labels": [IGNORE] * len(p) + c}
