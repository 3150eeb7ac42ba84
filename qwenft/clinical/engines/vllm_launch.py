"""Runs a vLLM server as a child process and stops it when qwenft goes away, however it goes.

Executed by the vLLM environment's interpreter (``python vllm_launch.py CMD...``), so it imports the standard
library only. qwenft holds the write end of this process's stdin: when qwenft exits -- cleanly, by an exception,
or killed with SIGKILL -- the pipe closes, ``read()`` returns, and the server gets SIGTERM, on which vLLM stops its
engine and worker processes itself. Without this, a killed qwenft would leave a server holding gigabytes of RAM
and a port. SIGTERM/SIGINT sent to this process are forwarded the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading


def main() -> int:
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
    stopping = threading.Event()

    def stop(*_: object) -> None:
        if stopping.is_set():  # once: the watchdog and a forwarded signal may both ask
            return
        stopping.set()
        try:
            child.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch() -> None:
        try:
            while os.read(0, 4096):  # unbuffered: b"" at EOF, i.e. qwenft closed the pipe or died
                pass
        except OSError:
            pass
        stop()

    threading.Thread(target=watch, daemon=True).start()
    rc = child.wait()
    return 0 if stopping.is_set() and rc in (0, -signal.SIGTERM) else rc


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code if code >= 0 else 128 - code)  # no interpreter shutdown with the watchdog thread still reading
