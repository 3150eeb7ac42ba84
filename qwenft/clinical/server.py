"""``qwenft serve``: the clinical pipeline as a JSON endpoint, next to vLLM's OpenAI-compatible API.

    POST /answer   {"prompt": "...", "strategy"?: "decomposition", "k"?: 3, "budget"?: "per_question",
                    "output"?: "json" | "text"}  ->  {"summary": ..., "answers": [{question, answer, evidence}]}
    GET  /health   -> {"status": "ok", "engine": "vllm" | "hf", "model": ..., "openai_api": URL | null}

With ``generation.engine`` vllm (the default where it is installed) the model runs in a vLLM server whose
OpenAI-compatible API (``/v1/completions``, ``/v1/chat/completions``, ...) is itself served on
``generation.vllm.host:port``; ``/answer`` sends its prompts there, so several requests batch together in vLLM.
With ``hf`` (no vLLM on this machine) ``/answer`` runs the transformers model, one request at a time.

Requests are bounded and checked before any work: at most ``max_request_kb`` of body (413), all of it within
``body_timeout_s`` (408, then the connection is closed), UTF-8 JSON without duplicate keys with known fields
of the right types, a known strategy, at most ``max_questions`` questions, a prompt the model's
context can hold -- each a 4xx with ``{"error": "<one line>"}``. SIGTERM / SIGINT stop the HTTP server, then
the vLLM server, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from omegaconf import DictConfig, OmegaConf
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from qwenft.clinical.engines import Engine, decoding, open_engine
from qwenft.clinical.output import Response
from qwenft.clinical.parse import parse_prompt
from qwenft.clinical.request import AnswerRequest, request_error
from qwenft.errors import UserError


class RequestError(Exception):
    """A bad request: ``status`` and a one-line message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_body(raw: bytes) -> object:
    """A request body -> its JSON value, read as data files are (``qwenft.data.io.loads_strict``): a duplicate
    key (``"prompt"`` twice: JSON would keep the last silently) or nesting too deep to parse is a 400, never a
    server error."""
    from qwenft.data.io import loads_strict

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"the request body is not valid UTF-8 (byte {err.start})") from None
    try:
        json.loads(text)  # syntax errors keep their line and column
    except json.JSONDecodeError as err:
        raise RequestError(400, f"the request body is not JSON: {err.msg} at line {err.lineno} column "
                                f"{err.colno}") from None
    except (ValueError, RecursionError):
        pass  # reported below, in data files' words
    body, problem = loads_strict(text)
    if problem is not None:
        raise RequestError(400, f"the request body is not a valid request: {problem}")
    return body


async def read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole request body, or a ``RequestError``: over ``max_bytes`` (413), or not all there within
    ``timeout_s`` (408: a body shorter than its Content-Length would otherwise hold the request open until the
    client gives up), or the client gone (400)."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"the request body is {int(declared)} bytes, over the limit of {max_bytes} "
                                "(max_request_kb)")
    raw = bytearray()

    async def receive_all() -> None:
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > max_bytes:
                raise RequestError(413, f"the request body is over the limit of {max_bytes} bytes (max_request_kb)")

    try:
        await asyncio.wait_for(receive_all(), timeout_s)
    except TimeoutError:
        expected = f" of the {declared} announced" if declared else ""
        raise RequestError(408, f"the request body did not arrive within {timeout_s:g} s (body_timeout_s): got "
                                f"{len(raw)} bytes{expected}") from None
    except ClientDisconnect:
        raise RequestError(400, "the client disconnected before sending the whole request body") from None
    return bytes(raw)


@dataclass
class Answerer:
    """Everything ``/answer`` needs, built once at start: the engine, every strategy, the retriever, limits."""

    engine: Engine
    strategies: dict
    default_strategy: str
    retriever: object
    k: int = 3
    budget: str = "per_question"
    max_questions: int = 64
    gen: dict = field(default_factory=dict)
    lock: threading.Lock | None = None  # hf: one request at a time (a torch model is not thread-safe)

    def parse(self, raw: bytes) -> dict:
        """The request body -> its fields, or a ``RequestError`` (400) naming what is wrong."""
        body = decode_body(raw)
        if not isinstance(body, dict):
            raise RequestError(400, 'the request body must be a JSON object: {"prompt": "..."}')
        try:
            req = AnswerRequest.model_validate(body, context={"strategies": self.strategies})
        except ValidationError as err:
            raise RequestError(400, request_error(err, self.strategies)) from None
        return {"prompt": req.prompt, "strategy": self.default_strategy if req.strategy is None else req.strategy,
                "k": self.k if req.k is None else req.k, "budget": self.budget if req.budget is None else req.budget,
                "output": req.output}

    def answer(self, request: dict) -> Response:
        from qwenft.clinical.answer import check_context, check_questions
        from qwenft.clinical.evaluate import answer_prompt

        try:
            parsed = parse_prompt(request["prompt"])
            check_questions(parsed, self.max_questions)
            strategy = self.strategies[request["strategy"]]
            check_context(parsed, self.engine.tokenizer, self.engine.model, int(self.gen.get("max_new_tokens", 64)),
                          bool(getattr(strategy, "whole_answer", False)))
        except UserError as err:
            raise RequestError(400, str(err)) from None
        with self.lock or contextlib.nullcontext():
            try:
                response, _ = answer_prompt(parsed, strategy, self.engine, self.retriever, request["k"],
                                            request["budget"], self.gen)
            except UserError as err:
                raise RequestError(400, str(err)) from None
        return response


def create_app(answerer: Answerer, info: dict, max_request_bytes: int, body_timeout_s: float = 10.0) -> FastAPI:
    """The ASGI app: ``POST /answer`` and ``GET /health``; every error is ``{"error": "<one line>"}``."""
    app = FastAPI(title="qwenft", description="The clinical pipeline of qwenft: POST /answer; GET /health.",
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")

    def error(status: int, message: str) -> JSONResponse:
        # a body that did not arrive (408) leaves the connection in an unknown state: close it
        return JSONResponse({"error": message}, status_code=status,
                            headers={"Connection": "close"} if status == 408 else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:  # 404, 405
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, str(exc).splitlines()[0])

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", **info}

    # the body is read by hand (size limit while streaming, one-line errors) and validated with AnswerRequest;
    # the same model documents it in /openapi.json and /docs
    body_schema = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": AnswerRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}

    @app.post("/answer", openapi_extra=body_schema, summary="Answer a clinical prompt (a scenario + its questions)",
              responses={200: {"description": '{"summary": ..., "answers": [{question, answer, evidence}]}'},
                         400: {"description": '{"error": "<one line>"}'}, 413: {"description": "body too large"}})
    async def answer(request: Request):  # noqa: ANN202
        try:
            raw = await read_body(request, max_request_bytes, body_timeout_s)
            fields_ = answerer.parse(raw)
            response = await run_in_threadpool(answerer.answer, fields_)
        except RequestError as err:
            return error(err.status, str(err))
        except Exception as err:  # noqa: BLE001 - the engine failed (vLLM gone): say so, keep serving
            return error(503, f"generation failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}")
        if fields_["output"] == "text":
            return PlainTextResponse(response.to_text())
        return response.to_dict()

    return app


# ---------------------------------------------------------------------------------------------- running


class _Stop(Exception):
    """SIGTERM/SIGINT while the model loads: stop what was started, exit 0."""


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserError(f"host={host} port={port}: cannot listen there: {err.strerror or err}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(cfg: DictConfig, say: Callable[[str], None] | None = None) -> None:
    """Start the engine (vLLM or hf), then the HTTP server; run until SIGTERM/SIGINT; stop both."""
    import uvicorn

    from qwenft.clinical.evaluate import load_strategy
    from qwenft.config import conf_dir

    say = say or (lambda line: print(f"qwenft serve: {line}", flush=True))
    default = str(cfg.strategy.name)
    strategies = {p.stem: load_strategy(p.stem, cfg.strategy) for p in sorted((conf_dir() / "strategy").glob("*.yaml"))}
    from hydra.utils import instantiate

    retriever = instantiate(cfg.retrieval)  # a bad knowledge base fails before the model loads
    sock = _listening_socket(str(cfg.host), int(cfg.port))  # a taken port fails before the model loads too
    gen = OmegaConf.to_container(cfg.generation, resolve=True)

    def stop_now(signum: int, frame) -> None:  # noqa: ANN001
        raise _Stop(signum)

    previous = {s: signal.signal(s, stop_now) for s in (signal.SIGTERM, signal.SIGINT)}
    engine = None
    try:
        engine = open_engine(gen, cfg.model)
        openai = None
        if engine.name == "vllm":
            openai = f"{engine.base_url}/v1"
            say(f"OpenAI-compatible API (vLLM): {openai}  (model name {engine.served_name!r})")
        else:
            say("vLLM is not in use (generation.engine): no OpenAI-compatible API; /answer runs on hf")
        answerer = Answerer(engine, strategies, default, retriever, int(cfg.k), str(cfg.budget),
                            int(cfg.max_questions), decoding(gen), threading.Lock() if engine.parallel == 1 else None)
        info = {"engine": engine.name, "model": getattr(engine, "folder", None) or getattr(engine, "label", None),
                "openai_api": openai, "strategies": sorted(strategies), "default_strategy": default}
        app = create_app(answerer, info, int(cfg.max_request_kb) * 1024, float(cfg.body_timeout_s))
        server = _server_class()(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        for s in previous:
            signal.signal(s, server.handle_exit)
        host, port = sock.getsockname()[:2]
        say(f"clinical API: http://{host}:{port}/answer (POST), http://{host}:{port}/health")
        server.run(sockets=[sock])
    except _Stop:
        pass
    finally:
        sock.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if engine is not None:
            engine.close()
        say("stopped")


def _server_class():  # noqa: ANN202 - uvicorn is imported only when serving
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn that stops on SIGTERM/SIGINT and returns, instead of re-raising the signal after shutdown
        (which would end the process before the vLLM server is stopped). ``serve`` installs the handlers."""

        def capture_signals(self):  # noqa: ANN202
            return contextlib.nullcontext()

        def handle_exit(self, sig: int, frame) -> None:  # noqa: ANN001
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    return Server
