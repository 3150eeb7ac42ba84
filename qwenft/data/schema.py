"""Schema of the ``data`` config group (``conf/data/*.yaml``, read by ``qwenft.data.datamodule`` and
``qwenft.data.io``): each key's rule and one-line doc, declared once; ``qwenft.validation`` checks them before
any file is read, so the readers trust what they are given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig

from qwenft.data.io import SCHEMAS
from qwenft.rules import BOOL, OPT_TEXT, TEXTS, Enum, Int, Rule, setting


def _files(x: Any) -> bool:
    return (isinstance(x, str) and bool(x)) or (isinstance(x, list | ListConfig) and bool(x)
                                                and all(isinstance(y, str) and y for y in x))


def _data_files(v: Any) -> bool:
    """``data.data_files`` as ``datasets.load_dataset`` takes it: a path, a list of paths, or split -> path(s)."""
    return _files(v) or (isinstance(v, dict | DictConfig) and bool(v) and all(_files(x) for x in v.values()))


def _mapping_of_texts(v: Any) -> bool:
    return isinstance(v, dict | DictConfig) and all(isinstance(x, str) and x for x in v.values())


@dataclass
class DataSchema:
    """``data``: the training files, how they are read, cut and batched."""

    train_path: str | None = setting(None, OPT_TEXT, "training file or dataset (null: the bundled demo set)")
    val_path: str | None = setting(None, OPT_TEXT, "validation split (null: the demo's, or none)")
    test_path: str | None = setting(None, OPT_TEXT, "scored once after fit (test/loss in metrics.json)")
    data_files: Any = setting(None, Rule("any", null=True, check=_data_files,
                                         text="a file, a list of files, or {split: file(s)} for datasets.load_dataset"),
                              "passed to datasets.load_dataset, e.g. {train: a.jsonl, validation: b.jsonl}")
    schema: str = setting("auto", Enum("auto", *SCHEMAS, null=True),
                          "auto | prompt_completion | messages | clinical | text")
    columns: Any = setting(None, Rule("any", null=True, check=_mapping_of_texts,
                                      text="a mapping of canonical name to column name, e.g. {prompt: question}"),
                           "canonical name -> your column, e.g. {prompt: question, completion: answer}")
    skip_bad_rows: bool = setting(False, BOOL, "skip bad rows and log their line numbers instead of stopping")
    max_chars: int | None = setting(None, Int(1, null=True), "a prompt longer than this is a data error")
    max_length: int = setting(512, Int(8, 1 << 20), "tokens an example keeps")
    overlong: str = setting("truncate", Enum("truncate", "drop"), "what happens to a longer example")
    batch_size: int = setting(8, Int(1, 1 << 16), "examples a step (per device)")
    packing: Any = setting("auto", Rule("any", check=lambda v: v is True or v is False or v == "auto",
                                        text="true, false or auto"),
                           "padding-free rows (true), length grouping (false), or packed for raw text only (auto)")
    tokens_per_batch: int | None = setting(None, Int(8, 1 << 30, null=True),
                                           "batches by token count instead of batch_size (GPUs)")
    pack_length: int | None = setting(None, Int(8, 1 << 30, null=True),
                                      "longest packed row with tokens_per_batch (null: max_length)")
    max_val_examples: int | None = setting(64, Int(0, null=True), "validation examples scored")
    heldout_text: str | None = setting(None, OPT_TEXT, "text for the new-word metrics (null: the validation split)")
    text_path: str | None = setting(None, OPT_TEXT, "raw text trained on in the same run as train_path")
    text_unit: str = setting("line", Enum("line", "paragraph", "document"), "how a .txt file is cut into documents")
    _required_: list[str] = setting([], TEXTS, "keys this option cannot go without (data=files: train_path)")
