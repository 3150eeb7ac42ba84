"""Did the answer name the reference diagnosis? Normalised string containment, with a small, stated set of
variants -- no medical synonym dictionary, so a match is never a guess.

Both texts are normalised the same way (:func:`normalize`):

* Unicode folded to ASCII (``Legg-Calvé-Perthes`` = ``Legg-Calve-Perthes``), lower case;
* possessives dropped (``Hirschsprung's disease`` = ``Hirschsprung disease``; curly apostrophes too);
* hyphens, slashes and other punctuation become spaces (``Stevens-Johnson`` = ``Stevens Johnson``);
* British spellings of a few stems mapped to American (``haem``->``hem``, ``oedema``->``edema``,
  ``oesoph``->``esoph``, ``leukaem``->``leukem``, ``anaem``->``anem``, ``tumour``->``tumor``, ``paed``->``ped``);
* whitespace collapsed.

The reference is then accepted in these forms (:func:`variants`), each matched as whole words anywhere in the
answer:

1. the whole reference;
2. the reference without its parenthetical (``Benign Paroxysmal Positional Vertigo (BPPV)`` -> without
   ``(BPPV)``);
3. the parenthetical alone when it is an abbreviation (2-6 capitals/digits, e.g. ``BPPV``, ``PML``);
4. any synonym the user supplies for that reference (``synonyms``: e.g. from a JSON file; qwenft ships none).

Nothing else: qualifiers are never dropped (``acute`` vs ``chronic`` leukaemia are different diagnoses), and an
answer naming several differentials is credited if the reference is among them -- containment rewards hedging,
which is why it is reported next to, not instead of, a reading of the answers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_BRITISH = ((r"haem", "hem"), (r"oedema", "edema"), (r"oesoph", "esoph"), (r"leukaem", "leukem"),
            (r"anaem", "anem"), (r"tumour", "tumor"), (r"paed", "ped"), (r"foet", "fet"))
_PAREN = re.compile(r"\(([^()]*)\)")
_ABBREVIATION = re.compile(r"^[A-Z][A-Z0-9]{1,5}$")


def normalize(text: str) -> str:
    """Lower-case ASCII words separated by single spaces (see the module docstring for every step)."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"(\w)'s\b", r"\1", text)
    text = re.sub(r"[^a-z0-9]+", " ", text)
    for british, american in _BRITISH:
        text = re.sub(rf"\b{british}", american, text)
    return " ".join(text.split())


def variants(reference: str, synonyms: Iterable[str] = ()) -> list[str]:
    """The normalised forms of ``reference`` an answer may contain (rules 1-4 of the module docstring)."""
    raw = unicodedata.normalize("NFKC", reference).replace("\u2019", "'")
    forms = [raw, _PAREN.sub(" ", raw)]
    forms += [m.strip() for m in _PAREN.findall(raw) if _ABBREVIATION.match(m.strip())]
    forms += list(synonyms)
    return [f for f in dict.fromkeys(normalize(f) for f in forms) if f]


def _contains(haystack: str, needle: str) -> bool:
    return f" {needle} " in f" {haystack} "


def diagnosis_match(answer: str, reference: str, synonyms: Iterable[str] = ()) -> float:
    """1.0 when the answer contains the reference diagnosis in one of its accepted forms, else 0.0."""
    text = normalize(answer)
    return float(any(_contains(text, v) for v in variants(reference, synonyms)))
