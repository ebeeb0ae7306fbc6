"""Atomic file writes: a reader never sees a half-written file.

Every file in a run directory goes through these helpers (temp file in the same
directory, fsync, ``os.replace``), so a process killed mid-write leaves either the
old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfnas.errors import RunDirError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temp file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes 0600 (and some writers recreate the file): give it the usual mode
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        # a system error (full disk) names no file: name the one refused; an OSError without
        # errno is left as it is (a filename would replace its message with "[Errno None] None")
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            exc.filename = str(path)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True) + "\n"


def write_jsonl(path: str | os.PathLike[str], records: list[dict[str, Any]]) -> Path:
    """Replace a JSONL file atomically (used to drop lines past a resumed checkpoint)."""
    return atomic_write_text(path, "".join(jsonl_line(r) for r in records))


def append_jsonl(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append one JSON line. A kill can only lose the last, unterminated line, which
    :func:`read_jsonl` skips; the next append first drops such a torn line (or ends a complete
    one with its newline), so a torn line never ends up in the middle of the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "a+b") as fh:
            _end_last_line(fh)
            fh.write(jsonl_line(record).encode("utf-8"))
            fh.flush()
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)  # a full disk's error names no file: name the one refused
        raise


def _end_last_line(fh: Any) -> None:
    """Make the file open in ``fh`` (binary, append mode) end with a newline: an unterminated
    last line that parses gets its newline, a torn one is cut off."""
    size = fh.seek(0, os.SEEK_END)
    if size == 0:
        return
    fh.seek(size - 1)
    if fh.read(1) == b"\n":
        return
    start = size
    while start > 0:  # find the start of the last line, reading backwards in blocks
        block = min(start, 65536)
        fh.seek(start - block)
        newline = fh.read(block).rfind(b"\n")
        if newline >= 0:
            start = start - block + newline + 1
            break
        start -= block
    fh.seek(start)
    if _parses(fh.read()):
        fh.write(b"\n")
    else:
        fh.truncate(start)


def _parses(line: bytes) -> bool:
    try:
        json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSON Lines file, in order; ``[]`` when the file does not exist.

    Blank lines are skipped, and so is a torn last line: one without its trailing newline that
    does not parse (a process killed mid-append, see :func:`append_jsonl`). Any other line that
    is not valid JSON (or not UTF-8) means the file was damaged: raises :class:`RunDirError`
    naming the file and the line number.
    """
    path = Path(path)
    if not path.exists():
        return []
    *lines, tail = path.read_bytes().split(b"\n")  # tail: b"" when the file ends with a newline
    records = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            records.append(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise RunDirError(
                f"{path}: line {number} is not valid JSON ({problem}); the file is damaged: "
                f"restore it from a copy or delete line {number}"
            ) from None
    if tail.strip() and _parses(tail):
        records.append(json.loads(tail.decode("utf-8")))  # complete, only its newline is missing
    return records
