"""Write folders and files so that a crash leaves either the old version or the new one, never half of one.

* Temp names carry the writer's pid (``.merged.tmp-<pid>-xxxx``, ``.last.ckpt.tmp-<pid>``): ``recover`` at the
  next start removes those of dead processes, and puts back a folder whose replacement was cut off between its
  two renames (``.merged.old-<pid>`` with no ``merged``), so an interrupted export leaves the previous export.
* A write that fails because the disk is full or read-only removes its temp file and raises ``OutputError``
  (one line, exit 3); the previous version stays in place.
* ``tempfile`` creates 0600 files and 0700 folders; outputs are meant to be shared (a ``merged/`` another account
  loads), so they get the modes a plain ``open()`` would give under the user's umask.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from qwenft.errors import OutputError

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(?:-.*)?$")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
# native writers (safetensors, torch's zip writer) report OS errors inside their own exception types
_WRITE_MESSAGES = (("no space left on device", "No space left on device"), ("os error 28", "No space left on device"),
                   ("read-only file system", "Read-only file system"), ("os error 30", "Read-only file system"),
                   ("disk quota exceeded", "Disk quota exceeded"), ("file write failed", "write failed"),
                   ("permission denied", "Permission denied"))


def umask() -> int:
    """The process umask, read without changing it where /proc allows (changing it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_modes(root: Path) -> None:
    """Give ``root`` and everything below the modes a plain ``open``/``mkdir`` would (0666/0777 minus umask)."""
    mask = umask()
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for p in paths:
        if p.is_symlink():
            continue
        try:
            if p.is_dir():
                os.chmod(p, 0o777 & ~mask)
            else:
                exe = p.stat().st_mode & 0o111
                os.chmod(p, (0o666 | exe) & ~mask)
        except OSError:
            pass


def write_problem(err: BaseException) -> str | None:
    """'No space left on device' and the like when ``err`` is a failed write (not a bug), else None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
            return err.strerror or os.strerror(err.errno)
        text = str(err).lower()
        for needle, problem in _WRITE_MESSAGES:
            if needle in text:
                return problem
        err = err.__cause__ or err.__context__
    return None


def _raise_if_write_error(err: BaseException, dest: Path) -> None:
    if isinstance(err, OutputError):
        return  # already one line about the file that failed
    problem = write_problem(err)
    if problem is not None:
        raise OutputError(f"cannot write {dest}: {problem} (the previous version is unchanged)") from err


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def recover(folder: str | os.PathLike) -> list[str]:
    """Clean up after writers that died in ``folder``: drop their temp files/folders, and put back a folder
    whose replacement stopped between its two renames. Returns what was done, for the log."""
    folder = Path(folder)
    done: list[str] = []
    if not folder.is_dir():
        return done
    for entry in sorted(folder.iterdir()):
        m = _TEMP.match(entry.name)
        if m is None or _pid_alive(int(m.group("pid"))):
            continue
        dest = folder / m.group("name")
        try:
            if m.group("kind") == "old" and not dest.exists():
                os.replace(entry, dest)  # the new version never arrived: the old one is the valid state
                done.append(f"restored {dest.name} from an interrupted replacement")
            elif entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
                done.append(f"removed {entry.name}")
            else:
                entry.unlink()
                done.append(f"removed {entry.name}")
        except OSError:
            pass
    return done


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside ``dest``; on success it replaces ``dest`` (two renames, see ``recover``)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-{os.getpid()}-"))
    try:
        try:
            yield tmp
            share_modes(tmp)
            old = None
            if dest.exists():
                old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
                if old.exists():
                    shutil.rmtree(old, ignore_errors=True)
                os.replace(dest, old)
            os.replace(tmp, dest)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except Exception as err:
            _raise_if_write_error(err, dest)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_group(folder: str | os.PathLike, names: list[str], tag: str = "group",
                 on_commit: Callable[[], None] | None = None) -> Iterator[Path]:
    """Several outputs of ``folder`` replaced together, or none of them: yield a staging folder in which the
    block writes each of ``names`` (files or folders); on success they are moved in place one after the other
    (renames only: microseconds), the replaced folders kept as ``.NAME.old-<pid>`` until all are in. An error or
    a signal handler's exception while the block writes leaves every previous output as it was and no temp
    file (``recover`` removes the staging folder of a killed writer). ``on_commit`` runs just before the renames
    (a signal handler can then hold a signal back until they are done).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=folder, prefix=f".{tag}.tmp-{os.getpid()}-"))
    try:
        try:
            yield stage
            missing = [n for n in names if not (stage / n).exists()]
            if missing:
                raise RuntimeError(f"atomic_group: {missing[0]} was not written")
            for n in names:
                share_modes(stage / n)
        except Exception as err:
            started = [n for n in names if (stage / n).exists()]  # the one being written when it failed
            _raise_if_write_error(err, folder / (started[-1] if started else names[0] if names else ""))
            raise
        if on_commit is not None:
            on_commit()
        olds = []
        for n in names:
            dest, new = folder / n, stage / n
            if dest.is_dir() and not dest.is_symlink():
                old = folder / f".{n}.old-{os.getpid()}"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(dest, old)
                olds.append(old)
            os.replace(new, dest)
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that becomes ``dest`` (fsync + one rename) when the block ends without an error.

    ``dest`` holds the new content or its previous one, never a part; a full disk or a read-only folder is an
    ``OutputError``. The temp file carries the writer's pid, so ``recover`` removes it if the writer died.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.tmp-{os.getpid()}-")
    except OSError as err:
        _raise_if_write_error(err, dest)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~umask())
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _raise_if_write_error(err, dest)
        raise


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    """``dest`` holds ``data`` or its previous content, never a part; a full disk is an ``OutputError``."""
    with atomic_file(dest) as f:
        f.write(data)


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def writable_dir_problem(path: str | Path) -> str | None:
    """Why ``path`` (a folder to be created or written into) cannot be written, or None. Checks the nearest
    existing ancestor with ``os.access`` (honours read-only mounts even for root) and writes nothing."""
    import os

    path = Path(path).expanduser()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        try:
            st = os.statvfs(probe)
            if st.f_flag & os.ST_RDONLY:
                return f"{probe} is on a read-only filesystem"
        except OSError:
            pass
        return f"{probe} is not writable (permission denied)"
    return None
