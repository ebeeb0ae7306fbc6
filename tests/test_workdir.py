"""A work folder's claim-and-do loop: finished and failed units are skipped, a user error is noted
and the others go on, a unit held elsewhere is done last, once its holder lets go."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from selfnas.errors import ConfigError
from selfnas.workdir import WorkDir


@dataclass(frozen=True)
class Unit:
    key: str


def test_work_through_skips_notes_failures_and_waits_for_held_units(tmp_path):
    folder = WorkDir(tmp_path / "w")
    units = [Unit(k) for k in ("done", "held", "bad", "noted", "free")]
    folder.failed.mkdir(parents=True)
    folder.failure("noted").write_text("an earlier failure")
    order, failures = [], []

    def do(unit: Unit) -> None:
        order.append(unit.key)
        if unit.key == "bad":
            raise ConfigError("bad unit")

    other = folder.lock("held")  # another holder, as a second process would be
    assert other.acquire(wait=False)
    threading.Timer(0.3, other.release).start()
    folder.work_through(
        units, do, lambda u: u.key == "done", lambda u, exc: failures.append((u.key, str(exc)))
    )
    assert order == ["bad", "free", "held"]  # the held unit last, once free
    assert failures == [("bad", "bad unit")] and folder.failure("bad").read_text() == "bad unit"
    assert sorted(p.name for p in folder.locks.iterdir()) == ["bad.lock", "free.lock", "held.lock"]


def test_an_error_that_is_not_a_user_error_stops_the_loop(tmp_path):
    folder = WorkDir(tmp_path)

    def do(unit: Unit) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        folder.work_through([Unit("a")], do, lambda u: False, lambda u, exc: None)
    assert folder.lock("a").acquire(wait=False)  # released on the way out
