"""File locks (``flock``): one writer per folder, and the plain claim of one lock file.

One writer per folder: an exclusive ``flock`` on ``FOLDER/.lock`` that names its holder. It is taken
without waiting: a second process refuses at once, in one line naming the holder (pid, host,
command, since when), which the holder writes into the lock file. The kernel drops a ``flock`` when
its process dies, so a killed holder never blocks anyone and there is no stale lock to delete by
hand; the file itself is removed when the lock is released. On NFS, Linux maps ``flock`` onto the
server's byte-range locks, so processes on several machines exclude each other as well; on a mount
without lock support (NFS with ``nolock``, some FUSE file systems) the locks are local to each
machine.

Within one process the lock is reentrant (a command that trains and then evaluates one run holds
it once). :func:`scope` releases the locks taken inside it; a lock nobody references any more is
released as well.

:class:`FileLock` is the plain exclusive ``flock`` on one lock file that the other claims share: a
unit of a study, a row of a ground-truth table, an Optuna journal file. It waits or refuses as
asked, names no holder, is not reentrant (two objects on one file exclude each other, even in one
process) and leaves its file in place; the kernel drops it when its process dies, so a killed
holder's claim is free again at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from selfnas.errors import RunDirError

LOCK_FILE = ".lock"
#: tries, and seconds between them, before a held lock is refused: a reader that probes the lock
#: (:func:`holder`) holds it for microseconds and must not make a writer refuse
_TRIES, _PAUSE_S = 5, 0.05

_held: dict[str, weakref.ref[FolderLock]] = {}


class FolderLock:
    """The exclusive lock of one folder, held by this process until :meth:`release`."""

    def __init__(self, folder: Path, fd: int, holder: dict[str, Any]) -> None:
        self.folder = folder
        self.path = folder / LOCK_FILE
        self.holder = holder
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file (while still holding the lock, so nobody holds a deleted one) and
        drop the lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(fd, self.path):
                self.path.unlink()
        os.close(fd)  # closing the last descriptor drops the flock
        key = _key(self.folder)
        if key in _held and _held[key]() in (self, None):
            del _held[key]

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit the kernel drops it anyway
            self.release()


class FileLock:
    """An exclusive ``flock`` on the file ``path`` (created, with its folder, when missing), held by
    this object from :meth:`acquire` to :meth:`release`; ``with FileLock(path):`` waits for it.
    ``path`` may be an existing folder: the lock is then on the folder itself (for a
    read-modify-write of a file in a folder whose ``.lock`` another lock holds)."""

    def __init__(self, path: str | Path, mode: int = 0o666) -> None:
        self.path = Path(path)
        self.mode = mode  # of a lock file this lock creates (less the umask)
        self._fd: int | None = None

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; without ``wait``, return False at once when another holder has it."""
        if self.path.is_dir():
            fd = os.open(self.path, os.O_RDONLY)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self.mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(folder: str | Path) -> FolderLock:
    """Take the lock of the existing ``folder``; :class:`RunDirError` naming the holder when another
    process holds it. Reentrant: a lock this process holds is returned as it is."""
    folder = Path(folder)
    current = _held.get(_key(folder))
    lock = current() if current is not None else None
    if lock is not None and lock.held:
        return lock
    path = folder / LOCK_FILE
    for attempt in range(_TRIES):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(
                f"cannot write the lock file {path}: {exc.strerror}; choose a folder you may write"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if attempt + 1 < _TRIES:
                time.sleep(_PAUSE_S)
                continue
            raise RunDirError(_in_use(folder, read_holder(folder))) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise RunDirError(
                    f"the file system of {folder} does not support file locks (flock); "
                    "use a folder on a local disk or on NFS with locking"
                ) from None
            raise
        if not _same_file(fd, path):  # released and removed by its holder meanwhile: take the new one
            os.close(fd)
            continue
        holder = _describe_self()
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        lock = FolderLock(folder, fd, holder)
        _held[_key(folder)] = weakref.ref(lock)
        return lock
    raise RunDirError(f"could not lock {folder}: its lock file keeps changing; run again")


def holder(folder: str | Path) -> dict[str, Any] | None:
    """Who holds ``folder``'s lock now: the holder's record (``{}`` when it wrote none yet), or
    None when no live process holds it. Creates and changes nothing."""
    folder = Path(folder)
    current = _held.get(_key(folder))
    lock = current() if current is not None else None
    if lock is not None and lock.held:
        return dict(lock.holder)
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None  # no lock file: never locked, or released
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return read_holder(folder)
    finally:
        os.close(fd)
    return None


def read_holder(folder: str | Path) -> dict[str, Any]:
    """The record in ``folder``'s lock file (``{}`` when missing or unreadable)."""
    try:
        record = json.loads((Path(folder) / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def describe_holder(record: dict[str, Any]) -> str:
    """``"pid 4242 on node1 (selfnas train --out r), since 2024-09-09T10:00:00Z"``."""
    if not record:
        return "another process (it has not written its name yet)"
    text = f"pid {record.get('pid', '?')} on {record.get('host', '?')}"
    if record.get("command"):
        text += f" ({record['command']})"
    return text + f", since {record.get('since', '?')}"


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Release, on exit, every lock first taken inside this block."""
    before = set(_held)
    try:
        yield
    finally:
        for key in [k for k in _held if k not in before]:
            ref = _held.get(key)
            lock = ref() if ref is not None else None
            if lock is not None:
                lock.release()
            _held.pop(key, None)


def _in_use(folder: Path, record: dict[str, Any]) -> str:
    return (
        f"{folder} is in use by {describe_holder(record)}; one process writes a run at a time: "
        "wait for it to finish or stop it, then run the command again"
    )


def _describe_self() -> dict[str, Any]:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program in ("cli.py", "__main__.py"):  # python -m selfnas.cli
        program = "selfnas"
    command = shlex.join([program, *sys.argv[1:]])
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command[:300],
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _key(folder: Path) -> str:
    return os.path.realpath(folder)
