"""A work folder: units of work that several processes share (a study's pretrainings, a table's rows).

    DIR/plan.json          what the folder computes, pinned once
    DIR/locks/<key>.lock   held (:class:`~selfnas.locks.FileLock`) by the process working on that unit
    DIR/failed/<key>.txt   why a unit failed with a user error in this invocation

Each unit writes its result atomically where its folder says (a study's cells, a table's rows),
so a finished unit is never redone. A unit is claimed with its lock, which the kernel frees when
the holder exits, even by ``kill -9``: a killed worker's unit is free again at once, and two live
workers never run the same unit.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from selfnas.errors import SelfnasError
from selfnas.io import atomic_write_text
from selfnas.locks import FileLock


class Keyed(Protocol):
    @property
    def key(self) -> str: ...


U = TypeVar("U", bound=Keyed)


class WorkDir:
    """Paths, claims and failure notes of one work folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    plan = property(lambda self: self.path / "plan.json")
    locks = property(lambda self: self.path / "locks")
    failed = property(lambda self: self.path / "failed")

    def lock(self, key: str) -> FileLock:
        return FileLock(self.locks / f"{key}.lock")

    def failure(self, key: str) -> Path:
        return self.failed / f"{key}.txt"

    def work_through(
        self,
        units: Sequence[U],
        do: Callable[[U], None],
        done: Callable[[U], bool],
        failed: Callable[[U, SelfnasError], None],
    ) -> None:
        """``do`` every unit of ``units`` that is not ``done``, has no failure note and no other
        process holds; then wait for the held ones and do those their holder did not finish (it
        died). A unit whose ``do`` raises a user error (:class:`SelfnasError`) gets its failure
        note and is passed to ``failed``; the others go on."""

        def attempt(unit: U, wait: bool) -> bool:
            note = self.failure(unit.key)
            if done(unit) or note.exists():
                return True
            lock = self.lock(unit.key)
            if not lock.acquire(wait=wait):
                return False
            try:
                if not done(unit):
                    do(unit)
            except SelfnasError as exc:
                atomic_write_text(note, str(exc))
                failed(unit, exc)
            finally:
                lock.release()
                gc.collect()  # a long run must not grow: free the unit's model and optimizer
            return True

        held = [unit for unit in units if not attempt(unit, wait=False)]
        for unit in held:
            attempt(unit, wait=True)
