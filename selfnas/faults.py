"""A write the machine refused (full disk, quota, read-only file system, permissions) as one line
that names the file and says what to do.

Every write of a run goes through an atomic temp file or an append whose torn line the next
append cuts off (:mod:`selfnas.io`), so a run stopped by a refused write keeps whole files and
resumes once the cause is fixed. Such errors arrive as :class:`OSError`, or as the text of another
library's error: SQLite says "database or disk is full", safetensors "(os error 28)".
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

#: errno -> (what happened, what to do first)
CAUSES = {
    errno.ENOSPC: ("no space left on the device", "free space"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space or raise the quota"),
    errno.EROFS: ("the file system is read-only", "make it writable"),
    errno.EACCES: ("permission denied", "give yourself write permission there"),
    errno.EPERM: ("operation not permitted", "give yourself write permission there"),
}
#: how other libraries word those errors in their own exceptions' text
_TEXTS = (
    (re.compile(r"database or disk is full", re.I), errno.ENOSPC, "the study database"),
    (re.compile(r"attempt to write a readonly database", re.I), errno.EROFS, "the study database"),
    (re.compile(r"\(os error (\d+)\)"), None, None),
)
#: commands that continue a stopped run by running them again with --resume
RESUMED_WITH_FLAG = ("train", "search", "finetune", "study")


def refused_write(exc: BaseException) -> tuple[int, str | None] | None:
    """``(errno, the file or None)`` when ``exc`` (or an exception it was raised from) is a write
    the machine refused; None for anything else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in CAUSES:
            filename = current.filename if isinstance(current.filename, str | os.PathLike) else None
            return current.errno, None if filename is None else str(filename)
        text = str(current)
        for pattern, code, what in _TEXTS:
            found = pattern.search(text)
            if found and (code is not None or int(found.group(1)) in CAUSES):
                return (code if code is not None else int(found.group(1))), what
        current = current.__cause__ or current.__context__
    return None


def message(code: int, filename: str | None, argv: list[str]) -> str:
    """``"no space left on the device writing RUN/metrics.jsonl; free space, then run the same
    command with --resume"``; ``argv`` is the command line (its command, --out and --resume)."""
    what, fix = CAUSES[code]
    where = f" writing {filename}" if filename else ""
    return f"{what}{where}; {fix}, then {_again(argv, filename)}"


def _again(argv: list[str], filename: str | None) -> str:
    """How to continue: the same command with --resume (and the run's --out when it was left to
    the default), or simply again."""
    command = argv[1] if len(argv) > 1 else ""
    if command not in RESUMED_WITH_FLAG or "--resume" in argv:
        return "run the same command again (it continues where it stopped)"
    out = _out(argv)
    run = Path(out) if out is not None else _run_of(filename)
    if run is None or not (run / "config.yaml").is_file():
        return "run the same command again"
    if command == "train" and _trained(run):  # the evaluation at the end was refused
        return f"finish the evaluation with `selfnas eval {run}`"
    if out is None:
        return f"run the same command with --resume --out {run}"
    return "run the same command with --resume"


def _trained(run: Path) -> bool:
    """The run's training finished (its weights are written): only its evaluation is left."""
    try:
        state = json.loads((run / "status.json").read_text(encoding="utf-8")).get("state")
    except (OSError, ValueError, AttributeError):
        return False
    return state in ("finished", "evaluating") and (run / "model.safetensors").is_file()


def _out(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("--out", "-o") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--out="):
            return arg[len("--out=") :]
    return None


def _run_of(filename: str | None) -> Path | None:
    """The outermost folder above ``filename`` that holds a run's config.yaml (a search run, not
    one of its trials)."""
    if filename is None:
        return None
    found = None
    for parent in Path(filename).parents:
        if (parent / "config.yaml").is_file():
            found = parent
    return found
