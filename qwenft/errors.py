"""User-facing errors: one line that names the file, the line and the problem; the CLI exits 2, no traceback.

Exit codes (documented in README "Reliability"): 2 = bad input or config, refused before the work starts;
3 = an output could not be written (disk full, read-only filesystem) -- the previous outputs stay valid;
128 + signal (130 SIGINT, 143 SIGTERM) = interrupted: the last checkpoint is saved, nothing is exported.
"""

from __future__ import annotations

import signal


class UserError(Exception):
    """Bad input or config detected before any work starts. ``str(err)`` is the whole message."""

    exit_code = 2


class DataError(UserError):
    """A data file problem, located as ``path:line: problem``."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class OutputError(UserError):
    """An output could not be written (disk full, read-only, permission); the old version is still in place."""

    exit_code = 3


class Interrupted(Exception):
    """Training stopped by SIGTERM/SIGINT: the checkpoint is saved, no final model is exported."""

    def __init__(self, signum: int, message: str) -> None:
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(message)

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"
