"""K-QA's two answer metrics (Manes et al., 2024), with a local lexical stand-in for the entailment judge.

K-QA scores a free-text answer against statements physicians wrote for the question:

* **comprehensiveness** -- the share of the *must-have* statements the answer entails;
* **hallucination rate** -- the share of *all* statements (must-have and nice-to-have) the answer contradicts.

The paper decides entailment and contradiction with an LLM judge (NLI by GPT-4). qwenft runs offline and ships no
NLI model, so both are **proxies**, reported as ``must_have_coverage`` and ``contradiction``:

* a statement is *supported* when some window of the answer (one sentence, or two adjacent sentences) contains
  at least ``threshold`` (default 0.6) of the statement's content words -- Porter-stemmed, stop words and
  negation words left out (set recall, i.e. ROUGE-1 recall on content words). This credits a paraphrase that
  keeps the key terms and misses one that changes them ("kidney" for "renal"); it credits a sentence that
  mentions the terms while saying something else about them. It measures *coverage of the statement's terms*,
  not entailment.
* a statement is *contradicted* when a single answer sentence supports it lexically (same test) but with the
  opposite polarity: in the clause that shares most content words with the statement (clauses split at
  punctuation and at but/however/although/...), one of the two has an odd number of negation cues (not, no,
  never, none, nor, neither, without, cannot, -n't, non-) and the other an even number. This catches the
  contradiction an NLI judge finds most often in short medical statements -- "X is (not) recommended" -- and
  nothing else: antonyms ("increases" /
  "decreases"), wrong numbers or wrong drugs are missed, and a negation elsewhere in a long sentence can raise a
  false flag. Read it as a lower bound on contradictions plus noise, comparable between strategies scored the
  same way, not as K-QA's hallucination rate.

Sanity check on the 201 K-QA rows (``tests/test_eval_metrics.py``): the physicians' own free-form answer covers
0.93 of its must-have statements and another question's answer 0.00; the proxy flags 3.7 % of the statements
as contradicted by their own reference answer (its false-positive floor) and 49 % once "is/are/can/should/may"
are negated in that answer. Both are per answer; the harness averages over prompts and bootstraps intervals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache

from nltk.stem.porter import PorterStemmer

THRESHOLD = 0.6
_STEMMER = PorterStemmer()
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NEGATION = re.compile(r"\b(?:not|no|never|none|nor|neither|without|cannot)\b|n't\b|\bnon-")
_CLAUSE = re.compile(r"\s*[,;:()]\s*|\s+(?=(?:but|however|although|though|whereas|while|so|unless)\b)")
_NEGATION_WORDS = frozenset({"not", "no", "never", "none", "nor", "neither", "without", "cannot"})
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|\n+")
# function words only: content words of medical statements (drug, dose, organ, symptom names) always count
_STOP = frozenset("""a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just may me might more most
must my myself of off on once only or other our ours ourselves out over own same she should so some such than
that the their theirs them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself yourselves""".split())


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _STEMMER.stem(word)


def content_words(text: str) -> frozenset[str]:
    """Stemmed lower-case words of ``text`` without stop words and negation cues."""
    words = (w.split("'")[0] for w in _WORD.findall(text.lower().replace("\u2019", "'")))
    return frozenset(_stem(w) for w in words if w and w not in _STOP and w not in _NEGATION_WORDS)


def negated(text: str) -> bool:
    """Odd number of negation cues: the sentence's polarity is negative."""
    return len(_NEGATION.findall(text.lower().replace("\u2019", "'"))) % 2 == 1


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def _recall(statement: frozenset[str], window: frozenset[str]) -> float:
    return len(statement & window) / len(statement) if statement else 0.0


def support(statement: str, answer: str) -> float:
    """Best share of the statement's content words found in one sentence or two adjacent ones of ``answer``."""
    want = content_words(statement)
    sents = [content_words(s) for s in sentences(answer)]
    windows = sents + [a | b for a, b in zip(sents, sents[1:], strict=False)]
    return max((_recall(want, w) for w in windows), default=0.0)


def _clause_polarity(want: frozenset[str], sentence: str) -> bool:
    """Polarity of the clause of ``sentence`` that shares most content words with the statement: in "X might
    help, but they are not approved" only the clause about X decides."""
    clauses = [c for c in _CLAUSE.split(sentence) if c and c.strip()]
    best = max(clauses, key=lambda c: len(want & content_words(c)), default=sentence)
    return negated(best)


def contradicts(statement: str, answer: str, threshold: float = THRESHOLD) -> bool:
    """An answer sentence carries the statement's terms with the opposite polarity (the proxy above)."""
    want = content_words(statement)
    polarity = _clause_polarity(want, statement)
    return any(_recall(want, content_words(s)) >= threshold and _clause_polarity(want, s) != polarity
               for s in sentences(answer))


def must_have_coverage(answer: str, must_have: Sequence[str], threshold: float = THRESHOLD) -> float:
    """Comprehensiveness proxy: share of the must-have statements supported by the answer (NaN without any)."""
    kept = [s for s in must_have if content_words(s)]
    if not kept:
        return math.nan
    return sum(support(s, answer) >= threshold for s in kept) / len(kept)


def contradiction_rate(answer: str, statements: Sequence[str], threshold: float = THRESHOLD) -> float:
    """Hallucination proxy: share of the statements (must-have + nice-to-have) the answer contradicts."""
    kept = [s for s in statements if content_words(s)]
    if not kept:
        return math.nan
    return sum(contradicts(s, answer, threshold) for s in kept) / len(kept)
