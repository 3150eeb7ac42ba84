"""The model card's metadata is built with ``huggingface_hub.ModelCardData``: license, base model, Hub datasets,
and the validation and test metrics as a model-index the Hub reads back."""

from __future__ import annotations

from huggingface_hub import ModelCard

from qwenft.config import compose
from qwenft.train.export import model_card

METRICS = {"val/loss": 1.25, "val/new_word_nll": 7.5, "test/loss": 1.5, "test/bits_per_byte": 1.3,
           "train/loss": 0.9, "global_step": 4, "test/checkpoint": "/run/checkpoints/best.ckpt", "flag/x": True}
MANIFEST = {"words": ["neurogenix", "cardiofloxin"], "init": "mean_subword", "new_tokens": [1, 2, 3]}
INFO = {"data_sha256": {"train": "ab" * 32}, "git_commit": "abc", "command": "qwenft train experiment=demo"}


def card_for(overrides: list[str]) -> ModelCard:
    cfg = compose("train", ["experiment=demo", *overrides])
    return ModelCard(model_card("Qwen/Qwen2.5-0.5B", MANIFEST, INFO, METRICS, cfg, checkpoint="best"))


def test_card_metadata_reads_back_through_huggingface_hub():
    card = card_for([])
    data = card.data
    assert data.license == "apache-2.0" and data.base_model == "Qwen/Qwen2.5-0.5B"
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert "qwenft" in data.tags and "vocabulary-extension" in data.tags
    assert data.model_name == "Qwen2.5-0.5B-qwenft" and data.datasets is None  # the demo set is not on the Hub
    results = {(r.metric_name, r.dataset_split): r.metric_value for r in data.eval_results}
    assert results == {("test/bits_per_byte", "test"): 1.3, ("test/loss", "test"): 1.5,
                       ("val/loss", "validation"): 1.25, ("val/new_word_nll", "validation"): 7.5}
    assert all(r.task_type == "text-generation" for r in data.eval_results)
    assert "model-index:" in card.content and "`test/loss`" in card.content and "new words: 2" in card.content
    assert "## Command" in card.content and "qwenft train experiment=demo" in card.content


def test_hub_datasets_and_license_come_from_the_config():
    card = card_for(["data=files", "data.train_path=owner/clinic", "data.val_path=hf://datasets/owner/clinic",
                     "data.test_path=hf://datasets/other/eval/test.jsonl", "export.license=mit"])
    assert card.data.license == "mit" and card.data.datasets == ["owner/clinic", "other/eval"]
    test = next(r for r in card.data.eval_results if r.dataset_split == "test")
    assert test.dataset_type == "other/eval/test.jsonl"
    assert ModelCard(model_card("tiny", None, INFO, {}, compose("train", ["export.license=null"]))).data.license is None
