"""Did an extension change anything but the new words? Measured token by token on a corpus.

An extended tokenizer may change a text in one way only: an occurrence of an added form becomes its one new
token. ``measure_drift`` checks exactly that on every text, against the original tokenizer:

* each new token spells its form at a legitimate place: a bare form (``"neurogenix"``) has no letter or digit on
  either side and no space before it (after a space the space form is the right token -- a bare token there is
  the stray-space bug); a space form (``" neurogenix"``) anywhere, but never as the start of a longer token
  of the original (``" pneumon"`` cutting ``Ġpneumonia`` is drift; ``" neurogenix"`` + ``"es"`` where Qwen
  had ``Ġneuro gen ix es`` is a counted longer-word split);
* the text between new tokens tokenizes exactly as the original tokenizer tokenizes that stretch on its own;
* every occurrence of a listed word that the original spelled as one token keeps that very id.

A text that breaks any of these counts as drifted. Occurrences are word-bounded (the new-word metric's
``word_pattern``), so the report also says how many are one token before and after.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field

from transformers import PreTrainedTokenizerBase

from qwenft.tokenizer.vocab import ADDED, FormReport


@dataclass
class DriftReport:
    texts: int = 0
    changed_texts: int = 0  # ids differ at all (new words became one token, as intended)
    drifted_texts: int = 0  # something other than an occurrence of an added form changed
    occurrences: int = 0  # word-bounded occurrences of the words
    one_token_before: int = 0  # ... spelled by one token by the original tokenizer
    one_token_after: int = 0  # ... spelled by one token by the extended tokenizer
    kept_changed: int = 0  # occurrences the original spelled as one token that now read otherwise
    longer_word_splits: int = 0  # space-form tokens followed by a letter (" neurogenixes" -> " neurogenix", "es")
    examples: list[str] = field(default_factory=list)  # the first drifted texts' first problem

    def as_dict(self) -> dict:
        return asdict(self)


def _covering(offsets: list[tuple[int, int]], start: int, end: int) -> list[int]:
    return [k for k, (a, b) in enumerate(offsets) if a < end and b > start]


def _problem(text: str, ids: list[int], offsets: list, new: dict[int, FormReport],
             base: PreTrainedTokenizerBase, base_offsets: list) -> tuple[str | None, int]:
    """The first way ``ids`` (extended) departs from the contract, or None; plus the longer-word splits seen."""
    starts = [a for a, _ in base_offsets]
    prev_end, prev_k, splits = 0, -1, 0
    for k, tid in [*((k, t) for k, t in enumerate(ids) if t in new), (len(ids), None)]:
        if tid is None:
            a = b = len(text)
        else:
            form = new[tid]
            a, b = offsets[k]
            if text[a:b] != form.form:
                return f"token {form.form!r} spans {text[a:b]!r} at {a}", splits
            before, after = text[a - 1 : a], text[b : b + 1]
            if not form.space and (before.isalnum() or before == " " or after.isalnum()):
                return f"{form.form!r} inside {text[max(a - 10, 0) : b + 10]!r}", splits
            j = bisect.bisect_left(starts, a)  # Qwen's token that starts where the new token starts
            if j < len(starts) and starts[j] == a and base_offsets[j][1] > b:
                return f"{form.form!r} cuts Qwen's token {text[slice(*base_offsets[j])]!r}", splits
            splits += form.space and after.isalpha()
        segment = text[prev_end:a]
        if ids[prev_k + 1 : k] != base(segment, add_special_tokens=False).input_ids:
            return f"{segment[:60]!r} tokenizes differently", splits
        prev_end, prev_k = b, k
    return None, splits


def measure_drift(texts: list[str], base: PreTrainedTokenizerBase, extended: PreTrainedTokenizerBase,
                  forms: list[FormReport], max_examples: int = 5, batch: int = 512) -> DriftReport:
    """Compare ``extended`` with ``base`` on ``texts`` (see the module docstring for what counts as drift)."""
    from qwenft.metrics.newword import word_pattern

    report = DriftReport()
    new = {f.id: f for f in forms if f.status == ADDED}
    words = sorted({f.word for f in forms})
    pattern = word_pattern(words) if words else None
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        before = base(chunk, add_special_tokens=False, return_offsets_mapping=True)
        after = extended(chunk, add_special_tokens=False, return_offsets_mapping=True)
        for i, text in enumerate(chunk):
            report.texts += 1
            b_ids, a_ids = before.input_ids[i], after.input_ids[i]
            b_off, a_off = before.offset_mapping[i], after.offset_mapping[i]
            problem = None
            if b_ids != a_ids:
                report.changed_texts += 1
                problem, splits = _problem(text, a_ids, a_off, new, base, b_off)
                report.longer_word_splits += splits
            for m in pattern.finditer(text) if pattern else ():
                s, e = m.span()
                old, cur = _covering(b_off, s, e), _covering(a_off, s, e)
                report.occurrences += 1
                report.one_token_before += len(old) == 1
                report.one_token_after += len(cur) == 1
                exact = len(old) == 1 and text[slice(*b_off[old[0]])] in (m.group(0), " " + m.group(0))
                if exact and [a_ids[k] for k in cur] != [b_ids[old[0]]]:
                    report.kept_changed += 1
                    problem = problem or f"{m.group(0)!r} at {s} was {b_ids[old[0]]}, now {[a_ids[k] for k in cur]}"
            if problem:
                report.drifted_texts += 1
                if len(report.examples) < max_examples:
                    report.examples.append(f"text {start + i}: {problem}")
    return report
