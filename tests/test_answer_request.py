"""``POST /answer`` is validated by a pydantic model (``qwenft.clinical.request``) that also documents it in the
server's OpenAPI, and a bad request still gets the one-line messages the server always gave."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from qwenft.clinical.request import AnswerRequest
from qwenft.clinical.server import Answerer, RequestError, create_app

STRATEGIES = {"decomposition": None, "hyde": None, "whole_prompt": None}


def answerer() -> Answerer:
    return Answerer(engine=None, strategies=STRATEGIES, default_strategy="decomposition", retriever=None, k=3)


def test_defaults_come_from_the_server():
    assert answerer().parse(b'{"prompt": "A case.\\n1. Why?"}') == {
        "prompt": "A case.\n1. Why?", "strategy": "decomposition", "k": 3, "budget": "per_question", "output": "json"}
    got = answerer().parse(b'{"prompt": "p", "strategy": "hyde", "k": 0, "budget": "per_prompt", "output": "text"}')
    assert got == {"prompt": "p", "strategy": "hyde", "k": 0, "budget": "per_prompt", "output": "text"}


@pytest.mark.parametrize(("body", "message"), [
    (b'{"strategy": "hyde"}', 'missing field "prompt": the scenario followed by its questions'),
    (b'{"prompt": "   "}', '"prompt" must be a non-empty string'),
    (b'{"prompt": 3}', '"prompt" must be a non-empty string'),
    (b'{"prompt": "\\ud800"}', '"prompt" is not valid Unicode text (character 0)'),
    (b'{"prompt": "p", "strategy": "telepathy"}', "unknown strategy 'telepathy' (known: decomposition, hyde, "
                                                   "whole_prompt)"),
    (b'{"prompt": "p", "strategy": null}', "unknown strategy None (known: decomposition, hyde, whole_prompt)"),
    (b'{"prompt": "p", "k": "3"}', '"k" must be an integer from 0 to 100'),
    (b'{"prompt": "p", "k": true}', '"k" must be an integer from 0 to 100'),
    (b'{"prompt": "p", "k": 101}', '"k" must be an integer from 0 to 100'),
    (b'{"prompt": "p", "k": 2.0}', '"k" must be an integer from 0 to 100'),
    (b'{"prompt": "p", "budget": "all"}', '"budget" must be one of per_question, per_prompt'),
    (b'{"prompt": "p", "output": "xml"}', '"output" must be "json" or "text"'),
    (b'{"prompt": "p", "zeta": 1, "temperature": 2}', "unknown field 'temperature' (fields: prompt, strategy, k, "
                                                      "budget, output)"),
    (b'{"temperature": 2}', "unknown field 'temperature'"),  # unknown fields first, as before
    (b'{"prompt": "", "k": -1}', '"prompt" must be a non-empty string'),  # then by field order
])
def test_bad_requests_keep_their_one_line_messages(body, message):
    with pytest.raises(RequestError) as err:
        answerer().parse(body)
    assert err.value.status == 400 and str(err.value).startswith(message) and "\n" not in str(err.value)


def test_openapi_documents_the_request_and_docs_are_served():
    client = TestClient(create_app(answerer(), {"engine": "hf"}, 1024))
    spec = client.get("/openapi.json").json()
    schema = spec["paths"]["/answer"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["title"] == AnswerRequest.__name__
    assert schema["properties"]["prompt"]["description"] == AnswerRequest.model_fields["prompt"].description
    assert schema["required"] == ["prompt"] and schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"prompt", "strategy", "k", "budget", "output"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    bad = client.post("/answer", content=b'{"prompt": "p", "k": "x"}')
    assert bad.status_code == 400 and bad.json() == {"error": '"k" must be an integer from 0 to 100'}
