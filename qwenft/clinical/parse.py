"""Split a clinical prompt into its scenario and its questions, whatever the question format.

Clinicians write questions in many shapes, and a wrong split silently turns a finding into a "question" (or
swallows a question into the scenario), so the rules are explicit:

* **List items** on their own lines: numbered (``1.``, ``1)``, ``(1)``), ``Q1:`` / ``Question 1:``, lettered
  (``a)``, ``(b)``, ``A.``) or bulleted (``-``, ``*``, ``•``, ``–``). Consecutive items of one style form a *run*
  (blank lines between items allowed; an unpunctuated item may continue on the next line). Scenarios often
  hold lists of their own (bulleted findings, numbered history), so the questions are the **last** run that
  looks like questions: a header line before it (``Questions:``, ``Please answer the following:``), an item
  ending in ``?``, or items that open with a question word or an imperative (``List``, ``Give`` ...). Earlier
  runs stay in the scenario, verbatim.
* **Nested lists** belong to their parent item: a clinician who numbers questions 1, 2, 3 asks three questions,
  and the sub-items under 1 (``1.1.``, ``a)``/``i.``/bullets under ``1. Diagnosis?`` or ``1. Management:``) are
  parts of question 1 that often make sense only with it. So each top-level item is one question, its sub-items
  appended to it verbatim with their markers (``Diagnosis? a) Cause? b) Differentials?``) and answered together.
  A sub-list is another marker style opening at 1 right under an item that ends in ``?`` or ``:`` (or indented
  below any item), or the item's own style indented below it. Item numbers have no upper bound (``10000.`` is a
  question like ``1.``).
* **Inline enumerations** (``a) What ...? b) Which ...?`` or ``(1) ... ? (2) ... ?`` on one line, every marker
  style above but bullets) are first put one item a line, so they parse as a list. Ordinary prose is left alone:
  the markers must count up from the first (``1``/``a``, or the marker that opens the line) one by one, in one
  shape (``1)`` and ``(2)`` do not chain), each preceded by whitespace, and every item must read as a question (end
  in ``?`` or open with a capitalised question word or imperative). ``vitamin B12 1.5 mg``, ``type 2) diabetes`` or the
  findings in ``(1) fever, (2) cough`` therefore stay text. Text after the last item's ``?`` (``Answer briefly.``)
  stays with the scenario.
* **Inline** questions, when no run qualifies: every sentence ending in ``?``; the other sentences are the
  scenario. Sentences break after ``.?!`` followed by whitespace, so ``7.5 g/dL`` and ``Dr. Smith`` stay whole.
* **No question at all**: the whole text is the scenario and ``questions`` is empty; strategies then answer the
  text as a single question (see :func:`Parsed.units`). An empty prompt is an :class:`EmptyPromptError`.

Each question's text is kept exactly: only the list marker and surrounding whitespace go; a question wrapped
over several lines is joined with single spaces. The parser never raises on non-empty text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qwenft.errors import UserError


class EmptyPromptError(UserError, ValueError):
    """The prompt is empty or whitespace only (a ``ValueError`` for library callers, exit 2 from the CLI)."""


# marker style -> pattern; the body must start with a non-space character after at least one space
_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("q", re.compile(r"^\s*(?:Q|Question)\s*(?P<n>\d+)\s*[:.)\-–]\s*(?P<body>\S.*)$", re.IGNORECASE)),
    ("number", re.compile(r"^\s*(?:(?P<n>\d+)\s*[.)]|\(\s*(?P<n2>\d+)\s*\))\s+(?P<body>\S.*)$")),
    ("lower", re.compile(r"^\s*(?:(?P<n>[a-z])\s*[.)]|\(\s*(?P<n2>[a-z])\s*\))\s+(?P<body>\S.*)$")),
    ("upper", re.compile(r"^\s*(?:(?P<n>[A-Z])\s*[.)]|\(\s*(?P<n2>[A-Z])\s*\))\s+(?P<body>\S.*)$")),
    ("bullet", re.compile(r"^\s*[-*•‣◦–—+]\s+(?P<body>\S.*)$")),
)
# a dotted sub-number (1.1., 2.3)): a sub-item of item 1 / 2 of a numbered list, never an item of its own
_SUBNUMBER = re.compile(r"^\s*(?P<n>\d+)(?:\.\d+)+[.)]?\s+(?P<body>\S.*)$")
_HEADER = re.compile(
    r"^\s*[#*_>\s]*(?:(?:please\s+)?(?:answer|address|respond\s+to|consider)\b.{0,60}|"
    r"(?:the\s+)?(?:[\w-]+\s+){0,3}(?:questions?|tasks?))\s*[:.]?\s*[*_]*\s*$",
    re.IGNORECASE,
)
_OPENERS = re.compile(
    r"^(?:what|which|who|whom|whose|when|where|why|how|is|are|does|do|did|can|could|should|would|will|"
    r"list|give|name|state|describe|explain|outline|suggest|identify|provide|summari[sz]e|discuss|"
    r"interpret|calculate|propose|recommend|justify)\b",
    re.IGNORECASE,
)
_ABBREVIATION = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Prof|St|vs|Fig|approx|e\.g|i\.e|etc|cf)\.$")
# a sentence ends after .?! (and closing quotes/brackets) + whitespace, at a line break before a capital, or
# before a capitalised question word (pasted notes often drop the full stop: "... gastric reflux What is ...")
_BREAK = re.compile(r"(?:(?<=[.?!])|(?<=[.?!][\"')\]]))\s+|\s*\n\s*(?=[A-Z])|"
                    r"\s+(?=(?:What|Which|Who|Whom|Whose|When|Where|Why|How)\b)")


@dataclass
class Parsed:
    """A prompt split in two; ``style`` says how the questions were found (number, q, lower, upper,
    bullet, inline or none), which the ``whole_prompt`` strategy and the tests use."""

    scenario: str
    questions: list[str] = field(default_factory=list)
    style: str = "given"

    def units(self) -> tuple[str, list[str]]:
        """(scenario, questions) to answer: a prompt without questions is answered as one question."""
        if self.questions:
            return self.scenario, list(self.questions)
        return "", [self.scenario]


@dataclass
class _Line:
    text: str
    style: str | None = None  # marker style for an item line
    body: str = ""
    ordinal: int | None = None  # 1, 2, 3 / a, b, c as 1, 2, 3; None for bullets; the parent's for "sub"

    @property
    def indent(self) -> int:
        return len(self.text) - len(self.text.lstrip())


@dataclass
class _Run:
    style: str
    start: int  # index of the first item line
    end: int  # index one past the last line the run owns
    questions: list[str]
    first: int | None = None  # ordinals of the first and last items
    last: int | None = None

    def asks(self) -> bool:
        return any(q.rstrip("\"')]*_ ").endswith("?") for q in self.questions)


# inline markers: preceded by the line start or whitespace, followed by whitespace; no space inside the marker
_INLINE_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("q", re.compile(r"(?:(?<=\s)|^)(?:Q|Question)\s?(?P<n>\d+)[:.)](?=\s+\S)", re.IGNORECASE)),
    ("number", re.compile(r"(?:(?<=\s)|^)(?:(?P<n>\d+)[.)]|\((?P<n2>\d+)\))(?=\s+\S)")),
    ("lower", re.compile(r"(?:(?<=\s)|^)(?:(?P<n>[a-z])[.)]|\((?P<n2>[a-z])\))(?=\s+\S)")),
    ("upper", re.compile(r"(?:(?<=\s)|^)(?:(?P<n>[A-Z])[.)]|\((?P<n2>[A-Z])\))(?=\s+\S)")),
)


def _ordinal(mark: str) -> int:
    return int(mark) if mark.isdigit() else ord(mark.lower()) - ord("a") + 1


def _asks(item: str) -> bool:
    """An inline item reads as a question: it ends in ``?`` or opens with a capitalised question word or
    imperative (``List ...``); lower case is prose (MedQuAD: ``type 1 (type A) is sometimes called ...``)."""
    item = item.strip().lstrip("*_ ")
    return item.rstrip("\"')]*_ ").endswith("?") or (item[:1].isupper() and bool(_OPENERS.match(item)))


def _split_inline(line: str) -> list[str] | None:
    """``line`` holding an enumeration of questions -> the text before it, then one line per item (indented as
    ``line``), then any text after the last item's ``?``; None when the line holds no such enumeration."""
    indent = line[: len(line) - len(line.lstrip())]
    text = line.strip()
    for _style, pattern in _INLINE_MARKERS:
        marks = [(m.start(), m.end(), _ordinal(m.group("n") or m.group("n2")),
                  re.sub(r"\d+|[A-Za-z](?=[.)])", "#", m.group(0)).lower()) for m in pattern.finditer(text)]
        found = []  # (chain, items, text after the last item) of every valid enumeration
        for first in (i for i, mk in enumerate(marks) if mk[0] == 0 or mk[2] == 1):
            chain = [marks[first]]
            for mk in marks[first + 1 :]:
                if mk[2] == chain[-1][2] + 1 and mk[3] == chain[0][3]:
                    chain.append(mk)
            if len(chain) < 2:
                continue
            items = [text[a[1] : b[0]].strip() for a, b in zip(chain, chain[1:], strict=False)]
            last, rest = text[chain[-1][1] :].strip(), ""
            cut = last.rfind("?")
            if 0 <= cut < len(last) - 1 and not last.rstrip("\"')]*_ ").endswith("?"):
                last, rest = last[: cut + 1], last[cut + 1 :].strip()  # "... ? Answer briefly."
            items.append(last)
            if all(items) and all(_asks(q) for q in items):
                found.append((chain, items, rest))
        if found:  # the longest; of equals the latest ("HR 1) 20 bpm. 1) What ...? 2) ...?")
            chain, items, rest = max(found, key=lambda f: (len(f[0]), f[0][0][0]))
            head = text[: chain[0][0]].strip()
            out = [indent + head] if head else []
            out += [f"{indent}{text[mk[0] : mk[1]]} {q}" for mk, q in zip(chain, items, strict=True)]
            return out + ([indent + rest] if rest else [])
    return None


def _expand_inline(lines: list[str]) -> list[str]:
    """Every line holding an inline enumeration of questions becomes one line per item (see the module doc)."""
    out: list[str] = []
    for line in lines:
        out += _split_inline(line) or [line]
    return out


def _classify(line: str) -> _Line:
    for style, pattern in _MARKERS:
        m = pattern.match(line)
        if m:
            mark = m.groupdict().get("n") or m.groupdict().get("n2")
            ordinal = None if mark is None else int(mark) if mark.isdigit() else ord(mark.lower()) - ord("a") + 1
            return _Line(line, style, m.group("body").strip(), ordinal)
    m = _SUBNUMBER.match(line)
    if m:
        return _Line(line, "sub", m.group("body").strip(), int(m.group("n")))
    return _Line(line)


def _is_header(line: str) -> bool:
    return len(line.strip()) <= 90 and bool(_HEADER.match(line))


def _segments(lines: list[_Line]) -> list[_Run]:
    """Items of one style with no blank line between them and rising ordinals (a restart at 1 is a new list)."""
    segs: list[_Run] = []
    i = 0
    while i < len(lines):
        first = lines[i]
        if first.style in (None, "sub"):
            i += 1
            continue
        seg = _Run(first.style, i, i + 1, [first.body], first.ordinal, first.ordinal)
        item, sub = first, None  # the current item's line; the style and last ordinal of its sub-items
        j = i + 1
        while j < len(lines) and lines[j].text.strip():
            line = lines[j]
            if _is_subitem(line, seg, item, sub):
                seg.questions[-1] = f"{seg.questions[-1]} {line.text.strip()}"
                sub = (line.style, line.ordinal)
            elif line.style == seg.style and (seg.last is None or (line.ordinal or 0) > seg.last):
                seg.questions.append(line.body)
                seg.last = line.ordinal
                item, sub = line, None
            elif line.style in (None, "sub") and _continues(seg.questions[-1], line.text):
                seg.questions[-1] = f"{seg.questions[-1]} {line.text.strip()}"
            else:
                break
            j += 1
        seg.end = j
        segs.append(seg)
        i = j
    return segs


def _is_subitem(line: _Line, seg: _Run, item: _Line, sub: tuple[str, int | None] | None) -> bool:
    """``line`` is a sub-item of the current ``item`` (see the module doc): ``1.1.`` under item 1; a list of
    another marker style opening at 1 (``a)``, ``-``) right under an item that asks (``?``/``:``), or any marker
    indented below the item, and that list's next items; the item's own style only indented below it."""
    if line.style is None:
        return False
    if line.style == "sub":
        return seg.style == "number" and line.ordinal == seg.last
    if sub is not None and line.style == sub[0] and (line.ordinal is None or line.ordinal == (sub[1] or 0) + 1):
        return line.style != seg.style or line.indent > item.indent
    if sub is not None:
        return False
    if line.style == seg.style:  # "1. ...\n   1. ..." is a sub-list, "1. ...\n   2. ..." a ragged list
        roman = seg.style in ("lower", "upper") and line.ordinal == 9 and seg.last != 8  # "a) ...\n   i) ..."
        return line.indent > item.indent and (line.ordinal == 1 or roman)
    if line.indent > item.indent:  # any other marker indented below an item (i), ii) ... read as letter i)
        return True
    asks = seg.questions[-1].rstrip("\"')]*_ ").endswith(("?", ":"))
    return line.ordinal in (1, None) and asks


def _runs(lines: list[_Line]) -> list[_Run]:
    """Segments separated only by blank lines join when they are one list: numbering goes on (2 after 1), or,
    for bullets, both segments ask questions or neither does (findings, blank line, questions stay apart)."""
    runs: list[_Run] = []
    for seg in _segments(lines):
        prev = runs[-1] if runs else None
        joined = prev is not None and prev.style == seg.style and \
            all(not ln.text.strip() for ln in lines[prev.end : seg.start]) and \
            ((seg.first == (prev.last or 0) + 1) if seg.first is not None else prev.asks() == seg.asks())
        if joined:
            prev.questions += seg.questions
            prev.end, prev.last = seg.end, seg.last
        else:
            runs.append(seg)
    return runs


def _continues(previous: str, line: str) -> bool:
    """A plain line right after an item continues it if the item is unfinished or the line is indented/lower."""
    stripped = line.strip()
    return (not previous.rstrip("\"')]*_ ").endswith((".", "?", "!", ":"))) or line[:1].isspace() or \
        stripped[:1].islower()


def _question_like(run: _Run, lines: list[_Line]) -> bool:
    before = next((ln.text for ln in reversed(lines[: run.start]) if ln.text.strip()), "")
    if before and _is_header(before):
        return True
    if run.asks():
        return True
    trailing = all(not ln.text.strip() for ln in lines[run.end :])
    return trailing and all(_OPENERS.match(q.lstrip("*_ ")) for q in run.questions)


def _from_list(lines: list[_Line]) -> Parsed | None:
    runs = [r for r in _runs(lines) if _question_like(r, lines)]
    if not runs:
        return None
    run = runs[-1]
    head = [ln.text for ln in lines[: run.start]]
    while head and not head[-1].strip():
        head.pop()
    if head and _is_header(head[-1]):
        head.pop()
    tail = [ln.text for ln in lines[run.end :]]
    scenario = "\n".join(head).strip()
    rest = "\n".join(tail).strip()
    if rest:  # instructions after the questions ("Answer briefly.") stay with the scenario
        scenario = f"{scenario}\n{rest}".strip()
    return Parsed(scenario, [q for q in run.questions if q], run.style)


def _sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of sentences; breaks after .?! + whitespace, not after abbreviations/initials."""
    spans, start = [], 0
    for m in _BREAK.finditer(text):
        piece = text[start : m.start()].rstrip("\"')]")
        if _ABBREVIATION.search(piece) and not piece.endswith("?"):
            continue
        spans.append((start, m.start()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def _inline(text: str) -> Parsed | None:
    spans = _sentences(text)
    asks = [(s, e) for s, e in spans if text[s:e].rstrip().rstrip("\"')]").endswith("?")]
    if not asks:
        return None
    questions = [" ".join(text[s:e].split()) for s, e in asks]
    others = [(s, e) for s, e in spans if (s, e) not in asks]
    if all(e <= asks[0][0] for _, e in others):
        scenario = text[: asks[0][0]].strip()  # the usual shape: the scenario verbatim, then the questions
    else:
        scenario = " ".join(text[s:e].strip() for s, e in others)
    return Parsed(scenario, questions, "inline")


def parse_prompt(text: str) -> Parsed:
    """``text`` -> :class:`Parsed`; raises :class:`EmptyPromptError` (a ``ValueError``) for an empty prompt."""
    if not isinstance(text, str):
        raise EmptyPromptError(f"the prompt must be text, got {type(text).__name__}")
    if not text.strip():
        raise EmptyPromptError("empty prompt: give a scenario followed by one or more questions")
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    lines = [_classify(line) for line in _expand_inline(text.split("\n"))]
    found = _from_list(lines) or _inline(text)
    if found is not None and found.questions:
        return found
    return Parsed(text, [], "none")
