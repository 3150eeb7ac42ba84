"""init=context: each new output row gives its token the probability the model gave the word's pieces there."""

from __future__ import annotations

import math

import pytest
import torch
from trainutil import TINY, qwenft

from qwenft.model.context_rows import fit_output_rows
from qwenft.model.sources import tiny
from qwenft.tokenizer.extend import extend_model

TEXTS = ["Her doctor prescribed zorbixamab twice daily.", "The nurse gave zorbixamab at night.",
         "The dose (zorbixamab) was halved."]


def _probabilities(model, base, ext, text: str, token) -> tuple[float, float]:
    """(probability of the word's pieces, of the new token) after ``text``'s prefix before the word."""
    prefix = text[:text.index(token.form)]
    ids = base(prefix, add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + token.piece_ids])).logits[0].float()
    at, n_old = len(ids) - 1, len(base)
    pieces = sum(float(torch.log_softmax(logits[at + j, :n_old], -1)[t]) for j, t in enumerate(token.piece_ids))
    with_new = torch.cat([logits[at, :n_old], logits[at, token.id:token.id + 1]])
    return math.exp(pieces), float(torch.softmax(with_new, -1)[-1])


def test_a_fitted_row_matches_the_pieces_probability_in_its_context_and_leaves_the_rest_alone():
    loaded = tiny(tie_word_embeddings=False)
    base = loaded.tokenizer
    emb_before = loaded.model.get_input_embeddings().weight.detach().clone()
    ext = extend_model(loaded.model, base, ["zorbixamab"], init="mean_subword")
    head = loaded.model.get_output_embeddings().weight
    mean_rows = head.detach().clone()
    token = next(t for t in ext.new_tokens if t.form == " zorbixamab")
    q, p_mean = _probabilities(loaded.model, base, ext, TEXTS[0], token)
    assert fit_output_rows(loaded.model, base, ext.tokenizer, ext.new_tokens, TEXTS[:1], ridge=1e-9) == 1
    _, p_fit = _probabilities(loaded.model, base, ext, TEXTS[0], token)
    assert p_fit == pytest.approx(q, rel=1e-3) and abs(math.log(p_mean) - math.log(q)) > 0.5  # init moved it there
    changed = (head.detach() != mean_rows).any(-1).nonzero().flatten().tolist()
    assert changed == [token.id]  # one occurrence of one form: one row; the input side is untouched
    assert torch.equal(loaded.model.get_input_embeddings().weight[:len(base)], emb_before[:len(base)])


def test_extend_with_init_context_uses_the_training_text_and_needs_it():
    loaded = tiny(tie_word_embeddings=False)
    before = loaded.model.get_output_embeddings().weight.detach().clone()
    ext = extend_model(loaded.model, loaded.tokenizer, ["zorbixamab"], init="context", texts=TEXTS)
    after = loaded.model.get_output_embeddings().weight.detach()
    moved = {i for i in ext.new_ids if not torch.equal(after[i], before[i])}
    assert moved == set(ext.new_ids)  # " zorbixamab" and "(zorbixamab": both forms fitted
    with pytest.raises(Exception, match="init=context"):
        extend_model(tiny().model, tiny().tokenizer, ["zorbixamab"], init="context")


def test_the_extend_verb_refuses_init_context_before_loading_a_model(tmp_path):
    out = qwenft("extend", "model=tiny", "tokenizer.words=[zorbixamab]", "tokenizer.init=context",
                 f"out={tmp_path}/ext", cwd=tmp_path)
    assert out.returncode == 2 and "tokenizer.init=context" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "ext").exists()


def test_train_with_init_context_runs_and_records_it(tmp_path):
    import json

    run = tmp_path / "run"
    out = qwenft("train", *TINY, "model.tie_word_embeddings=false", "tokenizer.init=context", "trainer.max_steps=2",
                 "trainer.val_check_interval=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "init=context: fitted" in (run / "cli.log").read_text()
    assert json.loads((run / "merged" / "qwenft_vocab.json").read_text())["init"] == "context"
