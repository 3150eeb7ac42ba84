"""New rows that make the model behave as if it had read the word's original pieces (token distillation).

Why: a row initialised to the mean of its pieces is a word the model can *write*, not one its attention treats
like the pieces it just read. Measured on real MedQuAD words in question-answer form ("What is W? <sentence>"),
mean-of-pieces rows raised the whole text's bits per byte by 2.8-3.0 % before any training, because the tokens
*after* the new one are predicted from states the model never saw (``experiments/results/newword_real``). Token
distillation (Dobler, Elliott, de Melo, ICLR 2026, arXiv 2505.20133) fixes the cause directly: with the model
frozen, only the new input rows are optimised so that the final (normed) hidden states -- what the head reads --
at the new token and at every token after it match the hidden states of the *same* model on the same snippet
written with the original pieces (the new token aligned with its last piece). Measured: +0.33-0.35 % instead.

The rows start from AdaptiVocab's (``qwenft.model.rows``). Not used, measured: an output-side term (at the
position before each occurrence, ``log p(new token)`` pulled towards the summed log-probability of its pieces,
training an untied head's new rows) made the new tokens likely *everywhere* -- it only sees the positions before
occurrences -- and held-out bits per byte rose from 1.85 to 4.79. The head's new rows therefore keep the
AdaptiVocab output init (first piece heaviest); a tied model's one shared row is learnt for reading, and the
model stays tied.

The teacher is the model itself: the original tokenization never contains a new id, so its states do not
depend on the rows being learnt, and no copy of the model is needed. Only the new rows get gradients; every other
weight is untouched (``tests/test_distill_init.py``).

Snippets come from the run's own text around each occurrence (some joined in pairs, so that the word recurs
within a snippet, as when an answer repeats the question's word); words with too few occurrences get snippets the
original model writes after a short prompt containing the word.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from qwenft.model.row_settings import DistillSettings
from qwenft.model.rows import NewRow, embeddings_tied

__all__ = ["DistillSettings", "align", "distill_rows", "text_snippets", "written_snippets"]

log = logging.getLogger(__name__)

PROMPTS = ("The use of {w}", "Patients with {w}", "What is {w}? The {w}", "In {w},", "{w} is")


# ------------------------------------------------------------------------------------------------ snippets


def _cut(text: str, start: int, end: int) -> str:
    """``text[start:end]`` widened to whitespace so no word is cut in half."""
    if start > 0:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < end else start
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start else end
    return text[start:end].strip()


def text_snippets(words: Sequence[str], texts: Sequence[str], settings: DistillSettings) -> dict[str, list[str]]:
    """Up to ``snippets_per_word`` windows of ``texts`` around each word (a quarter of them two windows joined,
    so the word recurs), drawn at random among all occurrences."""
    from qwenft.metrics.newword import word_pattern

    rng = random.Random(settings.seed or 0)  # None: the run did not say (extend_model passes its seed)
    found: dict[str, list[tuple[int, int]]] = {w: [] for w in words}
    pattern = word_pattern(list(words)) if words else None
    for i, text in enumerate(texts):
        for m in pattern.finditer(text) if pattern else ():
            found[m.group(0)].append((i, m.start()))
    out: dict[str, list[str]] = {}
    for word, hits in found.items():
        rng.shuffle(hits)
        windows = [_cut(texts[i], max(0, s - settings.chars_before), s + len(word) + settings.chars_after)
                   for i, s in hits[: settings.snippets_per_word]]
        pairs = len(windows) // 4 if len(windows) >= 2 else 0
        joined = [windows[k] + "\n" + windows[-1 - k] for k in range(pairs)]
        out[word] = (windows[: len(windows) - pairs] + joined)[: settings.snippets_per_word]
    return out


@torch.no_grad()
def written_snippets(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, words: Sequence[str], n: int,
                     settings: DistillSettings) -> dict[str, list[str]]:
    """``n`` snippets per word that the original model writes after a prompt containing the word (sampled,
    seeded): text in the model's own distribution, for words the corpus has too few of."""
    if n <= 0 or not words:
        return {w: [] for w in words}
    prompts = [(w, PROMPTS[k % len(PROMPTS)].format(w=w)) for w in words for k in range(n)]
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: dict[str, list[str]] = {w: [] for w in words}
    torch.manual_seed(settings.seed or 0)
    try:
        for start in range(0, len(prompts), 32):
            chunk = prompts[start : start + 32]
            enc = tokenizer([p for _, p in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
            gen = model.generate(**enc.to(device), max_new_tokens=settings.generated_tokens, do_sample=True,
                                 temperature=0.8, top_p=0.95, pad_token_id=tokenizer.pad_token_id)
            for (word, prompt), row in zip(chunk, gen[:, enc.input_ids.shape[1]:], strict=True):
                out[word].append(prompt + tokenizer.decode(row, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return out


# ---------------------------------------------------------------------------------------------- alignment


@dataclass
class Pair:
    """One snippet in both tokenizations, aligned: ``student_to_teacher[j]`` is the teacher position whose token
    ends where student token ``j`` ends (a new token maps to its last piece)."""

    teacher_ids: list[int]
    student_ids: list[int]
    student_to_teacher: list[int]
    first_new: int  # first student position holding a new id
    occurrences: list[tuple[int, int, int]]  # (student position of the new token, teacher first piece, n pieces)


def align(text: str, base: PreTrainedTokenizerBase, extended: PreTrainedTokenizerBase,
          new_ids: set[int]) -> Pair | None:
    t = base(text, add_special_tokens=False, return_offsets_mapping=True)
    s = extended(text, add_special_tokens=False, return_offsets_mapping=True)
    ends = {b: k for k, (_, b) in enumerate(t.offset_mapping)}
    starts = {a: k for k, (a, _) in enumerate(t.offset_mapping)}
    mapping, occ = [], []
    for j, ((a, b), tok) in enumerate(zip(s.offset_mapping, s.input_ids, strict=True)):
        if b not in ends:  # the tokenizations disagree beyond the new tokens: not a clean pair
            return None
        mapping.append(ends[b])
        if tok in new_ids:
            first = starts.get(a)
            if first is None:  # a new form's offsets may include its leading space
                first = starts.get(a + 1) if a + 1 in starts else None
            if first is None:
                return None
            occ.append((j, first, ends[b] - first + 1))
    if not occ:
        return None
    # the model sees a context token first (as the new-word metric scores it), so position 0 has a predecessor
    return Pair(t.input_ids, s.input_ids, mapping, occ[0][0], occ)


# ------------------------------------------------------------------------------------------------ learning


def _batches(pairs: list[Pair], size: int) -> list[list[Pair]]:
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


def _pad(rows: list[list[int]], pad: int) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def distill_rows(
    model: PreTrainedModel,
    base_tokenizer: PreTrainedTokenizerBase,
    extended_tokenizer: PreTrainedTokenizerBase,
    targets: Sequence[NewRow],
    texts: Sequence[str],
    settings: DistillSettings | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Learn the input rows of ``targets`` in place; returns a summary (``cached: true`` when the rows came from
    ``qwenft.model.distill_cache``, where every distillation is kept)."""
    from qwenft.hardware import native_bf16
    from qwenft.model import distill_cache

    settings = settings or DistillSettings()
    start_time = time.perf_counter()
    emb_in = model.get_input_embeddings().weight
    device, dtype = emb_in.device, emb_in.dtype
    order = sorted({t.id for t in targets})
    use_bf16 = device.type == "cpu" and native_bf16() and dtype == torch.float32
    digest = distill_cache.key(model, [(t.word, t.id) for t in targets], emb_in.detach()[order], texts, settings,
                               f"{dtype}/{'bf16-autocast' if use_bf16 else 'none'}")
    cached = distill_cache.load(digest, (len(order), emb_in.shape[1]))
    if cached is not None:
        with torch.no_grad():
            emb_in[order] = cached[0].to(device=device, dtype=dtype)
        log.info("distill: %d rows from the cache (%s/%s.safetensors); delete it to distil again",
                 len(order), distill_cache.root(), digest[:12])
        return {**cached[1], "cached": True}
    words = sorted({t.word for t in targets})
    snippets = text_snippets(words, texts, settings)
    half = -(-settings.snippets_per_word // 2)  # a word under half its snippets gets model-written ones up to half
    short = {w: half - len(s) for w, s in snippets.items() if len(s) < half}
    if short:
        written = written_snippets(model, base_tokenizer, list(short), max(short.values()), settings)
        for w, need in short.items():
            snippets[w] += written[w][:need]
        log.info("distill: %d of %d words had fewer than %d snippets in the text; the model wrote the rest",
                 len(short), len(words), half)
    new_ids = {t.id for t in targets}
    ctx = base_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    pairs = [p for w in words for text in snippets[w]
             if (p := align(text, base_tokenizer, extended_tokenizer, new_ids))]
    if not pairs:
        log.warning("distill: no snippet could be aligned; the rows keep their initial values")
        return {"snippets": 0}
    for p in pairs:  # context token first: the first real token is predicted too, as in the metrics
        p.teacher_ids = [ctx, *p.teacher_ids]
        p.student_ids = [ctx, *p.student_ids]
        p.student_to_teacher = [0, *(k + 1 for k in p.student_to_teacher)]
        p.first_new += 1
        p.occurrences = [(j + 1, f + 1, n) for j, f, n in p.occurrences]

    lookup = torch.full((emb_in.shape[0],), -1, dtype=torch.long, device=device)
    lookup[order] = torch.arange(len(order), device=device)
    rows_in = torch.nn.Parameter(emb_in.detach()[order].float().clone())
    opt = torch.optim.Adam([rows_in], lr=settings.lr)
    backbone = model.get_decoder() if hasattr(model, "get_decoder") else model.base_model
    pad = base_tokenizer.pad_token_id if base_tokenizer.pad_token_id is not None else ctx
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16)
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    model.eval()
    rng = random.Random(settings.seed or 0)  # None: the run did not say (extend_model passes its seed)
    batches = [b for _ in range(settings.epochs) for b in _batches(rng.sample(pairs, len(pairs)), settings.batch_size)]
    bar = _Progress(len(batches), progress)
    losses: list[float] = []
    try:
        for batch in batches:
            t_ids, t_mask = (x.to(device) for x in _pad([p.teacher_ids for p in batch], pad))
            s_ids, s_mask = (x.to(device) for x in _pad([p.student_ids for p in batch], pad))
            with torch.no_grad(), autocast:
                t_hidden = backbone(input_ids=t_ids, attention_mask=t_mask).last_hidden_state.float()
            # the new token and every token after it, each against the teacher's token ending at the same character
            sel = [(b, j, p.student_to_teacher[j]) for b, p in enumerate(batch)
                   for j in range(p.first_new, len(p.student_ids))]
            sel_b, sel_s, sel_t = (list(x) for x in zip(*sel, strict=True))
            k = lookup[s_ids]  # slot of each new token, -1 elsewhere
            embeds = torch.where((k >= 0)[..., None], rows_in[k.clamp(min=0)], emb_in.detach()[s_ids].float())
            with autocast:
                s_hidden = backbone(inputs_embeds=embeds.to(dtype), attention_mask=s_mask).last_hidden_state.float()
            loss = (s_hidden[sel_b, sel_s] - t_hidden[sel_b, sel_t]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(hidden=losses[-1])
    finally:
        bar.close()
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    with torch.no_grad():
        emb_in[order] = rows_in.detach().to(dtype)
    tenth = max(len(losses) // 10, 1)
    summary = {"snippets": len(pairs), "steps": len(batches), "seconds": time.perf_counter() - start_time,
               "hidden_mse_first": sum(losses[:tenth]) / tenth, "hidden_mse_last": sum(losses[-tenth:]) / tenth,
               "tied": embeddings_tied(model)}
    log.info("distill: %d snippets, %d steps, %.0f s (hidden mse, first/last tenth of the steps: %.4f -> %.4f)",
             summary["snippets"], summary["steps"], summary["seconds"], summary["hidden_mse_first"],
             summary["hidden_mse_last"])
    distill_cache.save(digest, rows_in, summary)
    return summary


class _Progress:
    """A tqdm bar where the run wants one (the distillation takes a minute or two on a CPU)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="distilling new rows", unit="batch", leave=False)

    def update(self, **postfix: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in postfix.items()}, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
