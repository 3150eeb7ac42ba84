"""``qwenft serve`` as a real subprocess, driven by a real HTTP client over loopback: good requests, bad ones
(4xx with a clear message), concurrent ones, and a clean stop on SIGTERM that leaves no process behind.

The hf path runs with the tiny model (fast, always); the vLLM path with the offline real weights, where vLLM is
installed and can run here (slow; skips with the reason otherwise)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from vllm_assets import assert_all_gone, require_vllm, tree

from qwenft.data.datamodule import DEMO_DIR

RECORDS = [json.loads(line) for line in (DEMO_DIR / "test.jsonl").read_text().splitlines()]
REC = next(r for r in RECORDS if len(r["questions"]) >= 3)
PROMPT = REC["scenario"] + "\n" + "\n".join(f"{i}. {q}" for i, q in enumerate(REC["questions"], 1))


class Served:
    """A running ``qwenft serve``: its process, the URLs it printed, its stdout lines so far."""

    def __init__(self, args: list[str], cwd: Path, start_timeout: float) -> None:
        env = {**os.environ, "QWENFT_CACHE": os.environ.get("QWENFT_CACHE", str(Path("~/.cache/qwenft").expanduser())),
               "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "qwenft.cli", "serve", *args], cwd=cwd, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr, False), daemon=True).start()
        self.api = self.openai = None
        deadline = time.monotonic() + start_timeout
        while self.api is None:
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"qwenft serve did not start in {start_timeout} s: {self.stderr[-20:]}")
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    time.sleep(0.5)  # let the pumps read what is left
                    why = f"qwenft serve exited with {self.proc.returncode}: {self.stderr[-20:]}"
                    raise AssertionError(why) from None
                continue
            if "OpenAI-compatible API (vLLM): " in line:
                self.openai = line.split("OpenAI-compatible API (vLLM): ")[1].split()[0]
            if "clinical API: " in line:
                self.api = line.split("clinical API: ")[1].split("/answer")[0]

    def _pump(self, stream, sink: list[str], signal_lines: bool) -> None:  # noqa: ANN001
        for line in stream:
            sink.append(line.rstrip("\n"))
            if signal_lines:
                self.lines.put(line)

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, as a service manager would; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for p in reversed(tree(self.proc.pid)):
                p.kill()
            raise


def test_serve_hf_answers_refuses_bad_requests_and_stops_cleanly(tmp_path):
    served = Served(["model=tiny", "model.tie_word_embeddings=false", "retrieval=bm25",
                     f"retrieval.cache_dir={tmp_path}/bm25", "generation.engine=hf", "port=0",
                     "generation.max_new_tokens=3", "generation.bf16=false", "max_questions=4", "max_request_kb=4"],
                    tmp_path, start_timeout=300)
    try:
        assert served.openai is None and any("no OpenAI-compatible API" in line for line in served.stdout)
        with httpx.Client(base_url=served.api, timeout=120) as client:
            health = client.get("/health").json()
            assert health["status"] == "ok" and health["engine"] == "hf" and health["openai_api"] is None

            ok = client.post("/answer", json={"prompt": PROMPT, "k": 1})
            assert ok.status_code == 200, ok.text
            data = ok.json()
            assert set(data) == {"summary", "answers"}
            assert [a["question"] for a in data["answers"]] == REC["questions"]
            assert all(len(a["evidence"]) == 1 for a in data["answers"])  # k=1 document from the demo KB
            text = client.post("/answer", json={"prompt": PROMPT, "strategy": "whole_prompt", "output": "text"})
            assert text.status_code == 200 and text.text.startswith("Summary: ")

            # concurrent requests on the hf engine are taken one at a time, all answered
            with ThreadPoolExecutor(3) as pool:
                codes = list(pool.map(lambda s: client.post("/answer", json={"prompt": PROMPT, "strategy": s,
                                                                              "k": 1}).status_code,
                                      ["decomposition", "hyde", "pool_rerank"]))
            assert codes == [200, 200, 200]

            def refused(status: int, fragment: str, **kw) -> None:
                r = client.post("/answer", **kw)
                assert r.status_code == status and fragment in r.json()["error"], (kw, r.status_code, r.text)

            refused(400, 'missing field "prompt"', json={"strategy": "decomposition"})
            refused(400, "not valid UTF-8", content=b'{"prompt": "caf\xe9?"}')
            refused(400, "not JSON", content=b'{"prompt": ')
            refused(400, "must be a JSON object", json=["a prompt"])
            refused(400, "unknown strategy 'telepathy' (known: decomposition", json={"prompt": PROMPT,
                                                                                  "strategy": "telepathy"})
            refused(400, "unknown field 'temperature'", json={"prompt": PROMPT, "temperature": 2})
            refused(400, '"k" must be an integer', json={"prompt": PROMPT, "k": "3"})
            refused(400, '"prompt" must be a non-empty string', json={"prompt": "   "})
            refused(400, "more than max_questions=4", json={"prompt": "A case.\n" + "\n".join(
                f"{i}. Why {i}?" for i in range(1, 6))})
            refused(413, "over the limit of 4096", json={"prompt": "A case. " * 600 + "Why?"})
            missing = client.get("/nothing")
            assert missing.status_code == 404 and "Not Found" in missing.json()["error"]
            assert client.get("/answer").status_code == 405
            assert client.post("/answer", json={"prompt": PROMPT, "k": 1}).status_code == 200  # still serving
        procs = tree(served.proc.pid)
    finally:
        code = served.stop()
    assert code == 0, served.stderr[-20:]
    assert served.stdout[-1].endswith("stopped")
    assert_all_gone(procs)


def _raw_request(url: str, head: bytes, body: bytes, wait_s: float) -> tuple[bytes, float, bool]:
    """Send ``head`` + ``body`` on a raw socket (a client that stalls); (what came back, seconds until the
    first byte, whether the server closed the connection)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=wait_s) as sock:
        sock.sendall(head + body)
        start, reply, took = time.monotonic(), b"", None
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                return reply, took if took is not None else time.monotonic() - start, False
            if not chunk:
                return reply, took if took is not None else time.monotonic() - start, True
            took = time.monotonic() - start if took is None else took
            reply += chunk
            sock.settimeout(5)


def test_serve_refuses_hostile_bodies_with_4xx_in_bounded_time(tmp_path):
    """Deep nesting (was 503 RecursionError), a duplicate "prompt" (was 200, last wins), a body shorter than its
    Content-Length (hung 25 s, then a full ASGI stack in the log): each a 4xx, quickly, nothing in the log."""
    served = Served(["model=tiny", "retrieval=none", "generation.engine=hf", "port=0", "generation.max_new_tokens=2",
                     "generation.bf16=false", "body_timeout_s=2"], tmp_path, start_timeout=300)
    try:
        with httpx.Client(base_url=served.api, timeout=60) as client:
            for body in (b'{"prompt": "A man. Why?", "k": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                         b"[" * 200_000 + b"]" * 200_000):
                r = client.post("/answer", content=body, headers={"content-type": "application/json"})
                assert r.status_code == 400 and "nested too deeply" in r.json()["error"], (r.status_code, r.text)
            r = client.post("/answer", content=b'{"prompt": "A man. Why?", "prompt": "A woman. What?"}')
            assert r.status_code == 400 and "duplicate key 'prompt'" in r.json()["error"], r.text
            r = client.post("/answer", content=b'{"prompt": "A man. Why?", "k": 1, "k": 2}')
            assert r.status_code == 400 and "duplicate key 'k'" in r.json()["error"], r.text

        head = (b"POST /answer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n")
        for _ in range(2):
            reply, took, closed = _raw_request(served.api, head, b'{"prompt": "A man', wait_s=15)
            assert reply.startswith(b"HTTP/1.1 408 "), (reply[:200], took)
            assert b"did not arrive within 2 s" in reply and 1.5 < took < 6, (reply, took)
            assert closed  # the connection is not left open with half a body in it
        with httpx.Client(base_url=served.api, timeout=60) as client:  # still serving
            ok = client.post("/answer", json={"prompt": PROMPT})
            assert ok.status_code == 200, ok.text
    finally:
        code = served.stop()
    assert code == 0, served.stderr[-20:]
    log = "\n".join(served.stderr + served.stdout)
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


def test_serve_refuses_a_taken_port_before_loading(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "qwenft.cli", "serve", "model=tiny", "retrieval=none",
                              "generation.engine=hf", f"port={port}"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=300)
    assert out.returncode == 2 and f"port={port}: cannot listen there" in out.stderr, out.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-m", "qwenft.cli", "serve", "model=tiny", "port=70000"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "port=70000" in bad.stderr


@pytest.mark.slow
def test_serve_vllm_exposes_openai_api_and_answers(tmp_path):
    require_vllm()
    from offline_assets import offline_model_dir

    offline_model_dir()
    served = Served(["model=offline", "retrieval=bm25", f"retrieval.cache_dir={tmp_path}/bm25", "port=0",
                     "generation.engine=vllm", "generation.vllm.port=0", "generation.max_new_tokens=8"],
                    tmp_path, start_timeout=1200)
    try:
        assert served.openai and served.openai.startswith("http://127.0.0.1:")
        with httpx.Client(timeout=600) as client:
            health = client.get(served.api + "/health").json()
            assert health["engine"] == "vllm" and health["openai_api"] == served.openai
            models = client.get(served.openai + "/models").json()["data"]
            assert [m["id"] for m in models] == ["qwenft"]
            chat = client.post(served.openai + "/chat/completions", json={
                "model": "qwenft", "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}]})
            assert chat.status_code == 200 and "Paris" in chat.json()["choices"][0]["message"]["content"]

            with ThreadPoolExecutor(2) as pool:  # two clients at once: both batched by vLLM
                replies = list(pool.map(lambda s: client.post(served.api + "/answer", json={
                    "prompt": PROMPT, "strategy": s, "k": 1}), ["decomposition", "whole_prompt"]))
            for r in replies:
                assert r.status_code == 200, r.text
                assert [a["question"] for a in r.json()["answers"]] == REC["questions"]
            assert any(a["answer"] for a in replies[0].json()["answers"])  # real weights write something
            bad = client.post(served.api + "/answer", json={"prompt": PROMPT, "strategy": "nope"})
            assert bad.status_code == 400 and "unknown strategy" in bad.json()["error"]
        procs = tree(served.proc.pid)
        assert any("vllm" in " ".join(p.cmdline()) for p in procs)  # the vLLM server is ours, below us
    finally:
        code = served.stop(timeout=180)
    assert code == 0, served.stderr[-30:]
    assert_all_gone(procs, timeout=60)
