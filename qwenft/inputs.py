"""Reading what a user names (data files, word lists, prompts, stdin): regular files only, bounded, strict UTF-8.

A FIFO or a device given as a data file would block ``read()`` forever (or stream without end), a 50 GB file
would be read into memory whole, and a latin-1 file would fail deep inside a tokenizer. Every reader of user
input goes through here so each of those becomes one ``DataError`` line before any work starts.

Limits are in MiB and can be raised per kind with environment variables (documented in README "Reliability"):
``QWENFT_MAX_INPUT_MB`` (data files, corpora; default 2048), ``QWENFT_MAX_WORDS_MB`` (word lists; 64),
``QWENFT_MAX_PROMPT_MB`` (a prompt from a file or stdin; 1).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from qwenft.errors import DataError

_DEFAULT_MB = {"data": 2048, "words": 64, "prompt": 1}
_ENV = {"data": "QWENFT_MAX_INPUT_MB", "words": "QWENFT_MAX_WORDS_MB", "prompt": "QWENFT_MAX_PROMPT_MB"}


def limit_bytes(kind: str) -> int:
    """The size limit for one kind of input (``data``, ``words``, ``prompt``), from its env var or the default."""
    raw = os.environ.get(_ENV[kind])
    try:
        mb = float(raw) if raw else _DEFAULT_MB[kind]
    except ValueError:
        mb = _DEFAULT_MB[kind]
    return max(int(mb * (1 << 20)), 1)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _kind_name(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def check_regular(path: str | Path, kind: str = "data", what: str = "file") -> os.stat_result:
    """``stat`` of ``path`` if it is a regular file within the ``kind`` limit, else a one-line DataError.

    Checked with ``stat`` before anything opens the path: opening a FIFO blocks until a writer appears.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(str(path), None, f"{what} not found") from None
    except OSError as err:
        raise DataError(str(path), None, f"cannot read: {err.strerror or err}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(str(path), None, f"is {_kind_name(st.st_mode)}, not a regular {what}; "
                                         "write the data to a file and give its path")
    limit = limit_bytes(kind)
    if st.st_size > limit:
        raise DataError(str(path), None, f"{what} is {_mb(st.st_size)}, over the limit of {_mb(limit)} "
                                         f"(raise it with {_ENV[kind]}=<MiB>)")
    return st


def read_bytes(path: str | Path, kind: str = "data", what: str = "file") -> bytes:
    """All bytes of a regular file, refusing FIFOs/devices and files over the ``kind`` limit."""
    path = Path(path)
    check_regular(path, kind, what)
    limit = limit_bytes(kind)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)  # the file may have grown since stat
    except OSError as err:
        raise DataError(str(path), None, f"cannot read: {err.strerror or err}") from None
    if len(data) > limit:
        raise DataError(str(path), None, f"{what} is over the limit of {_mb(limit)} "
                                         f"(raise it with {_ENV[kind]}=<MiB>)")
    return data


def read_stream(stream: BinaryIO, name: str = "<stdin>", kind: str = "prompt") -> bytes:
    """At most the ``kind`` limit of bytes from a binary stream (stdin); more is an error, not a truncation."""
    limit = limit_bytes(kind)
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise DataError(name, None, f"input is over the limit of {_mb(limit)} (raise it with {_ENV[kind]}=<MiB>)")
    return data


def decode_utf8(data: bytes, name: str) -> str:
    """Strict UTF-8 (a leading BOM is dropped); a bad byte is reported with its line and offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1)
        raise DataError(name, line, f"not valid UTF-8: byte 0x{data[err.start]:02x} at byte offset {col} of the "
                                    f"line (offset {err.start}); save the text as UTF-8") from None


def check_text(text: str, name: str) -> str:
    """Text from argv can carry lone surrogates (undecodable bytes under a C locale): refuse it by name."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        line = text.count("\n", 0, err.start) + 1
        raise DataError(name, line, f"not valid UTF-8 (undecodable byte at character {err.start})") from None
    return text
