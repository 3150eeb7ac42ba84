"""A run directory belongs to one run, written by one process at a time.

A fresh run pointed at a folder that already holds files (another run's ``config.yaml`` and checkpoints, or a
user's own files) would replace some of them and mix others (``history.jsonl``, ``merged/`` of two runs): it is
refused unless the run resumes (``ckpt_path=``). Two processes writing one run dir at once would interleave their
history and race on every output: the first holds an exclusive ``flock`` on ``.qwenft.lock`` for the whole run,
the second is refused with one line. Only rank 0 claims the folder (DDP children re-run the same command).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from qwenft.errors import OutputError, UserError

LOCK = ".qwenft.lock"
RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "GROUP_RANK")

#: What waits until this run may write its run dir (a resume whose checks passed): the CLI holds Hydra's record of
#: the job (``.hydra/``, the job log) here, so that a refused resume leaves the old run's files as they were.
_HELD: list[Callable[[], None]] = []


def hold(write: Callable[[], None]) -> None:
    """``write`` runs at ``accept()``, not before."""
    _HELD.append(write)


def accept() -> None:
    """The run's checks passed: what was held is written now (the loop calls this before its first write)."""
    while _HELD:
        _HELD.pop(0)()


def holding() -> bool:
    """Whether something still waits for ``accept()``."""
    return bool(_HELD)


def drop_held() -> None:
    """The run was refused: what was held is never written."""
    _HELD.clear()


def is_rank_zero() -> bool:
    """True unless a launcher (Lightning's DDP children, torchrun, SLURM) says this process is another rank."""
    for var in RANK_VARS:
        try:
            if int(os.environ.get(var, "0") or 0) != 0:
                return False
        except ValueError:
            continue
    return True


def hydra_own_files(run_dir: Path) -> set[str]:
    """What this process's Hydra job has already written into ``run_dir`` (``.hydra/``, ``<job>.log``)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return set()
        hc = HydraConfig.get()
        if Path(hc.runtime.output_dir).resolve() != run_dir.resolve():
            return set()
        return {n for n in (hc.output_subdir, f"{hc.job.name}.log") if n}
    except Exception:  # noqa: BLE001 - no Hydra runtime: nothing of its own to ignore
        return set()


def contents(run_dir: Path, ignore: set[str] = frozenset()) -> list[str]:
    """The entries of ``run_dir`` that some earlier run or the user put there (sorted, folders with a ``/``)."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir()
                  if p.name not in ignore and p.name != LOCK)


def refuse_occupied(run_dir: Path, key: str, ignore: set[str] = frozenset()) -> None:
    """A fresh run (no ``ckpt_path=``) needs an empty or new folder: say what is there and what to do."""
    found = contents(run_dir, ignore)
    if not found:
        return
    names = {f.rstrip("/") for f in found}
    what = "another run" if names & {"config.yaml", "run_info.json", "checkpoints", "history.jsonl"} else \
        f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}"
    shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
    raise UserError(f"{key}={run_dir}: already holds {what} ({shown}); a new run needs an empty or new folder: "
                    f"choose another {key}=, or add ckpt_path=last to continue the run that is there")


def writable(run_dir: Path, key: str) -> None:
    """A folder that cannot be written is an output problem: exit 3, before any work."""
    from qwenft.atomic import writable_dir_problem

    problem = writable_dir_problem(run_dir)
    if problem:
        raise OutputError(f"{key}={run_dir}: cannot write there: {problem}")


@contextlib.contextmanager
def lock(run_dir: Path, key: str = "run_dir") -> Iterator[None]:
    """Hold ``run_dir/.qwenft.lock`` exclusively; another holder (a live process) is one ``UserError`` line.

    The lock file is removed on release, so a finished or refused run leaves no trace; a file left by a killed
    process holds no lock (the kernel drops it with the process) and is simply taken over.
    """
    path = run_dir / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise UserError(f"{key}={run_dir}: another qwenft process{f' (pid {holder})' if holder else ''} is "
                            "writing this run directory; wait for it to finish, or choose another folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its previous holder unlinked while we waited to lock it
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""


@contextlib.contextmanager
def claim(run_dir: Path, resuming: bool, key: str = "run_dir") -> Iterator[None]:
    """Everything a run checks about its folder before writing into it, and the lock held while it writes.

    Rank 0 only: other ranks of the same run use the folder rank 0 claimed.
    """
    writable(run_dir, key)
    if not is_rank_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        yield
        return
    if not resuming:  # before the lock too: a refused run into an old folder leaves no lock file behind
        refuse_occupied(run_dir, key, hydra_own_files(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    with lock(run_dir, key):
        if not resuming:  # again under the lock: another process may have started in the meantime
            refuse_occupied(run_dir, key, hydra_own_files(run_dir))
        yield
