"""Make each new word ONE token where Qwen splits it, and never touch a spelling Qwen already has.

Why plain ``tokenizer.add_tokens(["neurogenix"])`` is wrong: added tokens are cut out of the text *before*
pre-tokenization, so the space in front of the word is left alone and becomes a token of its own
(``Ġtook``, ``Ġ``, ``neurogenix``) -- a sequence the model never saw in pre-training. Qwen's own words come in
two forms, with and without the leading space (``Ġtook`` / ``took``), and so do ours. Each form is decided on
its own, against the ORIGINAL tokenizer (:func:`plan_forms`):

* **kept** -- Qwen already spells the form as one token (``" insulin"`` is ``Ġinsulin``): nothing is added, the
  pretrained id and row stay exactly as they were.
* **added** -- the form is several pieces: it becomes an added token. ``" neurogenix"`` (after a space) is matched
  anywhere, so the preceding word does not block it; ``"neurogenix"`` (start of text, after a newline,
  punctuation, a bracket or a quote) is ``single_word``, so it never fires inside another word.
* **skipped** -- adding it would change text Qwen already tokenizes, so it is not added, and the report says why:

  - the bare form of a word whose space form Qwen already has (``insulin``: ``Ġinsulin`` exists, ``insulin`` is
    ``ins`` + ``ulin``). An added ``"insulin"`` is matched before the pre-tokenizer and cannot see the space, so
    it would turn every ``" insulin"`` into ``Ġ`` + ``insulin`` (the bug this module exists to avoid). Added
    tokens cannot alias an existing id either (tokenizers re-numbers them on load), so at a line start or after
    a bracket such a word keeps Qwen's own pieces, as it always had.
  - the space form of a word Qwen spells as a lone ``Ġ`` + the word's one token (``" ichtig"``): the word is
    already one pretrained token after a space, and stays so.
  - the space form of a word that begins words Qwen spells as one token (``" pneumon"`` would cut
    ``Ġpneumonia`` into ``" pneumon"`` + ``"ia"``: an added token cannot see where a word ends); its bare form
    is skipped with it, for the reason above.

Added tokens, unlike a custom pre-tokenizer or extra BPE entries, survive every way transformers reloads a Qwen2
tokenizer (``AutoTokenizer`` rebuilds Qwen2's backend from vocab + merges + added tokens, with fixed
pre-tokenizer and ``ignore_merges=False``; new BPE merges would also need intermediate tokens that show up inside
other words). Limit, measured and tested: after a space, a longer word that starts with a new word and that
Qwen does not spell as one token is split as the new word plus the rest (``" neurogenixes"`` ->
``" neurogenix"``, ``"es"``). ``qwenft.tokenizer.drift`` checks all of this on a corpus.
"""

from __future__ import annotations

import bisect
import copy
import re
import unicodedata
from dataclasses import asdict, dataclass, field

from tokenizers import AddedToken
from transformers import PreTrainedTokenizerBase
from transformers.convert_slow_tokenizer import bytes_to_unicode

from qwenft.errors import UserError

_BYTE_TO_UNICODE = bytes_to_unicode()
_UNICODE_TO_BYTE = {c: b for b, c in _BYTE_TO_UNICODE.items()}
ADDED, KEPT, SKIPPED = "added", "kept", "skipped"


@dataclass
class NewToken:
    """One surface form of a new word and where it lives."""

    word: str
    form: str  # the text the token stands for: "neurogenix" or " neurogenix"
    id: int
    pieces: list[str] = field(default_factory=list)  # tokens the original tokenizer gives for `form`
    piece_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FormReport:
    """What happened to one form of one word, and why (the per-word report of ``extend`` and ``train``)."""

    word: str
    form: str
    status: str  # added | kept | skipped
    reason: str
    id: int | None = None  # added: the new id; kept: Qwen's id; skipped: None
    pieces: list[str] = field(default_factory=list)  # what the original tokenizer gives for the form
    piece_ids: list[int] = field(default_factory=list)

    @property
    def space(self) -> bool:
        return self.form.startswith(" ")

    def to_dict(self) -> dict:
        return asdict(self)


def byte_level(text: str) -> str:
    return "".join(_BYTE_TO_UNICODE[b] for b in text.encode("utf-8"))


_WORD_OK = re.compile(r"^[^\W\d_](?:[\w'-]*[^\W_])?$")


def normalise_words(words: list[str], capitalized: bool = False) -> tuple[list[str], list[str]]:
    """Validate and deduplicate; returns (words, notes about duplicates).

    Words with spaces, control characters or special-token look-alikes are errors (the user meant something
    else). A word must start with a letter and end with a letter or digit: an added token ending in ``-`` or
    ``'`` would cut ``-x`` or ``'s`` apart where Qwen keeps them together.
    """
    kept: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()
    for raw in words:
        word = unicodedata.normalize("NFC", str(raw).strip())
        if word in seen:
            notes.append(f"{word!r}: duplicate, kept once")
            continue
        if not word:
            raise UserError(f"new word {raw!r}: empty")
        if "<|" in word or "|>" in word or word.startswith("<"):
            raise UserError(f"new word {raw!r}: looks like a special token; choose a plain word")
        if any(unicodedata.category(c).startswith("C") for c in word):
            raise UserError(f"new word {raw!r}: contains a control character")
        if any(c.isspace() for c in word):
            raise UserError(f"new word {raw!r}: contains whitespace; add one word at a time")
        if not _WORD_OK.match(word):
            raise UserError(f"new word {raw!r}: must start with a letter, end with a letter or digit, and contain "
                            "only letters, digits, ' or -")
        for v in [word] + ([word[0].upper() + word[1:]] if capitalized and word[0].islower() else []):
            if v not in seen:
                seen.add(v)
                kept.append(v)
    return kept, notes


def known_longer_words(keys: list[str], form: str, limit: int = 5) -> list[str]:
    """Vocabulary entries that spell ``form`` followed by at least one more letter (byte-level search)."""
    prefix = byte_level(form)
    found: list[str] = []
    i = bisect.bisect_left(keys, prefix)
    while i < len(keys) and keys[i].startswith(prefix):
        rest = bytes(_UNICODE_TO_BYTE[c] for c in keys[i][len(prefix):] if c in _UNICODE_TO_BYTE)
        if rest:
            text = rest.decode("utf-8", errors="ignore")
            # a lead byte of a multi-byte letter cut off by the token boundary counts as a letter (conservative)
            if (text[:1].isalpha() if text else rest[0] >= 0xC0) and len(found) < limit:
                found.append(form + (text or "…"))
        i += 1
    return found


def plan_forms(tokenizer: PreTrainedTokenizerBase, words: list[str]) -> list[FormReport]:
    """For each word, its space form then its bare form: added, kept or skipped, decided on ``tokenizer``."""
    keys = sorted(tokenizer.get_vocab())
    reports: list[FormReport] = []
    for word in words:
        space, bare = " " + word, word
        sp_ids = tokenizer(space, add_special_tokens=False).input_ids
        bare_ids = tokenizer(bare, add_special_tokens=False).input_ids
        sp_pieces, bare_pieces = tokenizer.convert_ids_to_tokens(sp_ids), tokenizer.convert_ids_to_tokens(bare_ids)

        def report(form, status, reason, ids, pieces, word=word):  # noqa: ANN001, ANN202 - local shorthand
            return FormReport(word, form, status, reason, ids[0] if status == KEPT else None, pieces, ids)

        if len(sp_ids) == 1:
            sp = report(space, KEPT, f"Qwen already spells it as one token ({sp_pieces[0]})", sp_ids, sp_pieces)
        else:
            if len(sp_ids) == 2 and len(bare_ids) == 1 and sp_ids[1] == bare_ids[0]:
                # " ichtig" is Ġ + ichtig: after a space the word is already one pretrained token
                sp = report(space, SKIPPED, f"Qwen spells it as {sp_pieces[0]!r} + {sp_pieces[1]!r}: the word is "
                            "already one pretrained token there, which an added token would replace",
                            sp_ids, sp_pieces)
            elif longer := known_longer_words(keys, space):
                sp = report(space, SKIPPED, "it begins words Qwen spells as one token ("
                            + ", ".join(repr(w) for w in longer) + "); an added token would split them",
                            sp_ids, sp_pieces)
            else:
                sp = report(space, ADDED, f"Qwen splits it into {len(sp_ids)} pieces", sp_ids, sp_pieces)
        if len(bare_ids) == 1:
            br = report(bare, KEPT, f"Qwen already spells it as one token ({bare_pieces[0]})", bare_ids, bare_pieces)
        elif sp.status == ADDED:
            br = report(bare, ADDED, f"Qwen splits it into {len(bare_ids)} pieces", bare_ids, bare_pieces)
        else:
            why = "is one Qwen token" if sp.status == KEPT else "is not added"
            br = report(bare, SKIPPED, f"{space!r} {why}; an added {bare!r} would split it into ' ' + {bare!r}",
                        bare_ids, bare_pieces)
        reports += [sp, br]
    return reports


def extend_tokenizer(
    tokenizer: PreTrainedTokenizerBase, words: list[str]
) -> tuple[PreTrainedTokenizerBase, list[NewToken], list[FormReport]]:
    """A copy of ``tokenizer`` with a token for every form :func:`plan_forms` adds; returns the forms' report.

    Checked before returning: every added form encodes to its one new id, and every kept form still encodes to
    Qwen's id (so a regression here fails at extension time, not in a run's numbers).
    """
    forms = plan_forms(tokenizer, words)
    extended = copy.deepcopy(tokenizer)
    added = [f for f in forms if f.status == ADDED]
    extended.add_tokens([AddedToken(f.form, single_word=not f.space, normalized=True, special=False) for f in added])
    new_tokens: list[NewToken] = []
    for f in added:
        f.id = extended.convert_tokens_to_ids(f.form)
        new_tokens.append(NewToken(f.word, f.form, f.id, list(f.pieces), list(f.piece_ids)))
    for f in forms:
        if f.status == SKIPPED:
            continue
        got = extended(f.form, add_special_tokens=False).input_ids
        if got != [f.id]:
            raise RuntimeError(f"extension failed for {f.form!r} ({f.status}): {got} != [{f.id}]")
    return extended, new_tokens, forms


def words_with_new_tokens(forms: list[FormReport]) -> list[str]:
    """The words that got at least one new token, in order (the "new words" of metrics and model cards)."""
    return list(dict.fromkeys(f.word for f in forms if f.status == ADDED))
