"""``init=context``: output rows that give each new token the probability the model already gave its pieces.

A new token's output row decides how likely the model finds the word *before any training*. ``mean_subword``
averages the pieces' rows, which scores the word like a blend of its pieces' first-step probabilities, not like
the word. Here the row is fitted instead: at every occurrence of the form in the training text the original model
(original tokenizer) gives a hidden state ``h`` before the word and a probability ``q`` to the whole piece
sequence. With the new token in the vocabulary, it gets ``q`` exactly when its logit is
``z = log q - log(1 - q) + logsumexp(old logits)``; the row is the ridge solution of ``w . h = z`` over the
occurrences, pulled towards the ``mean_subword`` row (few occurrences, 896 dimensions). Input rows stay
``mean_subword``. On a tied model the one row serves both sides and takes the fitted value.
(Context-based init is one of the comparisons in Mundra et al. 2024; the closed form is qwenft's.)
"""

from __future__ import annotations

import logging
import math

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def occurrences(tokenizer: PreTrainedTokenizerBase, texts: list[str], ids: set[int],
                per_token: int) -> dict[int, list[tuple[int, int]]]:
    """``{new id: [(text index, char offset), ...]}``: where the extended tokenizer emits each new id."""
    found: dict[int, list[tuple[int, int]]] = {i: [] for i in ids}
    for n, text in enumerate(texts):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        for tid, (start, _) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
            if tid in found and len(found[tid]) < per_token and start > 0:  # no context at offset 0: skipped
                found[tid].append((n, start))
        if all(len(v) >= per_token for v in found.values()):
            break
    return found


@torch.no_grad()
def _contexts(model: PreTrainedModel, base: PreTrainedTokenizerBase, prefixes: list[list[int]], pieces: list[int],
              n_old: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden state before the word and target logit ``z`` for each prefix (original tokenizer ids). The head runs
    only where the word's pieces are predicted: all positions x 152k rows would cost more than the blocks."""
    hs, zs = [], []
    head = model.get_output_embeddings()
    decoder = model.get_decoder()  # last_hidden_state is after the final norm: what the head reads
    device = head.weight.device
    for b in range(0, len(prefixes), batch_size):
        seqs = [p + pieces for p in prefixes[b:b + batch_size]]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), base.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
        last = decoder(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
        for i, prefix in enumerate(prefixes[b:b + batch_size]):
            at = len(prefix) - 1
            logits = head(last[i, at:at + len(pieces)]).float()[:, :n_old]
            logp = torch.log_softmax(logits, -1)
            lq = min(float(sum(logp[j, tok] for j, tok in enumerate(pieces))), math.log(0.99))
            z = lq - math.log1p(-math.exp(lq)) + float(torch.logsumexp(logits[0], -1))
            hs.append(last[i, at].double().cpu())
            zs.append(z)
    return torch.stack(hs), torch.tensor(zs, dtype=torch.float64)


@torch.no_grad()
def fit_output_rows(model: PreTrainedModel, base: PreTrainedTokenizerBase, extended: PreTrainedTokenizerBase,
                    new_tokens: list, texts: list[str], per_token: int = 8, context_tokens: int = 48,
                    ridge: float = 0.1, batch_size: int = 8) -> int:
    """Fit the output row of every new token that occurs in ``texts`` (at most ``per_token`` contexts each);
    returns how many rows were fitted (the others keep their ``mean_subword`` rows)."""
    head = model.get_output_embeddings().weight
    n_old = len(base)
    where = occurrences(extended, texts, {t.id for t in new_tokens}, per_token)
    was_training = model.training
    model.eval()
    fitted = 0
    for t in new_tokens:
        if not where[t.id]:
            continue
        prefixes = [base(texts[n][:start], add_special_tokens=False).input_ids[-context_tokens:]
                    for n, start in where[t.id]]
        h, z = _contexts(model, base, prefixes, list(t.piece_ids), n_old, batch_size)
        w0 = head[t.id].double().cpu()
        gram = h @ h.T  # n x n: the dual form, since there are far fewer occurrences than dimensions
        lam = ridge * float(gram.diagonal().mean())
        alpha = torch.linalg.solve(gram + lam * torch.eye(len(z), dtype=gram.dtype), z - h @ w0)
        head[t.id] = (w0 + h.T @ alpha).to(head.dtype).to(head.device)
        fitted += 1
    model.train(was_training)
    log.info("init=context: fitted %d of %d new output rows from up to %d contexts each", fitted, len(new_tokens),
             per_token)
    return fitted
