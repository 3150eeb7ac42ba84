"""User-facing errors: one line that names the file, the line and the problem; the CLI exits 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or config detected before any work starts. ``str(err)`` is the whole message."""


class DataError(UserError):
    """A data file problem, located as ``path:line: problem``."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")
