"""Examples -> token ids: the loss on the completion only, or on every token of raw text.

Instruct models see the Qwen2.5 chat template; base models a plain template. The completion ends with EOS:
``<|im_end|>`` for Instruct, ``<|endoftext|>`` for base models.

Prompt and completion are tokenized separately and concatenated. That is what the model meets at inference
(it is handed the prompt's tokens and generates from there), and the boundary is exact by construction. Both
templates end the prompt with a newline, where the Qwen2 pre-tokenizer cuts anyway, so for almost every
completion the concatenation also equals the tokenization of the full text. The exception is a completion that
itself starts with a newline (``"\\n\\n"`` is one token in the full text): ``encode_example`` checks every
example and reports it as ``boundary_merged`` so ``prepare`` can count it in the log instead of hiding it.

Raw text (schema ``text``: continued pretraining, as LLaMA-Factory's ``stage: pt``, Axolotl's ``completion`` and
TRL's ``text`` field) has no template and no prompt: ``encode_text`` gives the document's tokens plus
``<|endoftext|>`` -- the document separator of Qwen's own pretraining, for base and Instruct models alike -- and
the loss is on every token. A document longer than ``max_length`` is cut into consecutive windows
(``text_windows``), each one training example, so no text is truncated away.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

IGNORE = -100
BASE_TEMPLATE = "### Question:\n{prompt}\n\n### Answer:\n"


def prompt_text(tokenizer: PreTrainedTokenizerBase, messages: list[dict], instruct: bool) -> str:
    """The text a model reads before it answers: the chat template (Instruct) or the plain template (base)."""
    if instruct:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return BASE_TEMPLATE.format(prompt="\n\n".join(m["content"] for m in messages if m["role"] != "system"))


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict], instruct: bool) -> list[int]:
    """The tokens a model reads before it answers (also used for generation)."""
    return tokenizer(prompt_text(tokenizer, messages, instruct), add_special_tokens=False).input_ids


def eos_token(instruct: bool) -> str:
    return "<|im_end|>" if instruct else "<|endoftext|>"


def encode_example(tokenizer: PreTrainedTokenizerBase, record: dict, instruct: bool) -> dict:
    """``{prompt, completion}`` or ``{messages}`` -> ``{input_ids, labels, boundary_merged}`` (prompt = -100)."""
    if "messages" in record:
        messages, completion = record["messages"][:-1], record["messages"][-1]["content"]
    else:
        messages, completion = [{"role": "user", "content": record["prompt"]}], record["completion"]
    text = prompt_text(tokenizer, messages, instruct)
    p = tokenizer(text, add_special_tokens=False).input_ids
    c = tokenizer(completion, add_special_tokens=False).input_ids
    merged = tokenizer(text + completion, add_special_tokens=False).input_ids != p + c
    c.append(tokenizer.convert_tokens_to_ids(eos_token(instruct)))
    return {"input_ids": p + c, "labels": [IGNORE] * len(p) + c, "boundary_merged": merged}


TEXT_EOS = "<|endoftext|>"


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> dict:
    """Raw text -> ``{input_ids, labels}``: the document's tokens and ``<|endoftext|>``, labels on every token."""
    ids = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.convert_tokens_to_ids(TEXT_EOS)]
    return {"input_ids": ids, "labels": list(ids)}


def text_windows(example: dict, max_length: int) -> list[dict]:
    """Consecutive ``max_length``-token windows of one encoded document (the last may be shorter)."""
    n = len(example["input_ids"])
    return [{k: v[i : i + max_length] for k, v in example.items()} for i in range(0, n, max_length)]
