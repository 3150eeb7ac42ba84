"""The ``POST /answer`` request of ``qwenft serve`` as a pydantic model: one schema that both validates a body and
documents it in the server's OpenAPI (``/openapi.json``, ``/docs``).

Pydantic's own error texts name internal types ("Input should be a valid integer"); a client of ``/answer`` gets
the one-line messages the server always gave instead, chosen here from the first error by field order
(``request_error``), so every 4xx says what to send.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from qwenft.clinical.strategies import BUDGETS

#: The fields of a request, in the order their problems are reported.
FIELDS = ("prompt", "strategy", "k", "budget", "output")


class AnswerRequest(BaseModel):
    """One clinical prompt to answer: the scenario followed by its questions, and how to answer it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prompt": "A 45-year-old woman has fatigue.\n1. What is the diagnosis?\n2. What is the first test?",
         "k": 3}]})

    prompt: StrictStr = Field(description="the scenario followed by its questions (any list format)")
    # absent: the server's default (None); an explicit null is refused, as any other wrong type
    strategy: StrictStr = Field(None, description="a strategy of conf/strategy/; default: the server's")
    k: StrictInt = Field(None, ge=0, le=100, description="documents retrieved per question (see budget)")
    budget: Literal[BUDGETS] = Field(None, description="per_question: k per question; per_prompt: k x n")
    output: Literal["json", "text"] = Field("json", description="json: {summary, answers}; text: the rendering")

    @field_validator("prompt")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty")
        value.encode("utf-8")  # a lone surrogate (\ud800) is valid JSON but not text: UnicodeEncodeError
        return value

    @field_validator("strategy")
    @classmethod
    def _known(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("strategies")
        if known is not None and value not in known:
            raise ValueError("unknown strategy")
        return value


def request_error(err: ValidationError, strategies: Any) -> str:
    """The one-line message for the first problem of a request (unknown fields first, then by field order)."""
    errors = err.errors(include_url=False)
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})"
    first = min(errors, key=lambda e: FIELDS.index(e["loc"][0]) if e["loc"] and e["loc"][0] in FIELDS else 99)
    name = first["loc"][0] if first["loc"] else ""
    if name == "prompt":
        if first["type"] == "missing":
            return 'missing field "prompt": the scenario followed by its questions'
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, UnicodeEncodeError):
            return f'"prompt" is not valid Unicode text (character {cause.start})'
        return '"prompt" must be a non-empty string'
    if name == "strategy":
        return f"unknown strategy {first['input']!r} (known: {', '.join(sorted(strategies))})"
    if name == "k":
        return '"k" must be an integer from 0 to 100'
    if name == "budget":
        return f'"budget" must be one of {", ".join(BUDGETS)}'
    if name == "output":
        return '"output" must be "json" or "text"'
    return str(err).splitlines()[0]
