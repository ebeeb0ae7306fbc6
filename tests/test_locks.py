"""FileLock (the claim of a study unit, a table row, a journal file): a held lock is refused to
others and freed when its holder is killed."""

import os
import signal
import subprocess
import sys
import time

from selfnas.locks import FileLock

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def test_a_lock_held_elsewhere_is_refused_and_freed_by_kill_9(tmp_path):
    path = tmp_path / "locks" / "a01.lock"
    path.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = FileLock(path)
        assert not lock.acquire(wait=False)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not lock.acquire(wait=False):
            assert time.monotonic() < deadline, "the lock of a killed holder was not freed"
            time.sleep(0.05)
        other = FileLock(path)
        assert not other.acquire(wait=False)  # exclusive within one process too
        lock.release()
        assert other.acquire(wait=False)
        other.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_with_waits_for_the_lock_and_releases_it(tmp_path):
    path = tmp_path / "new" / "folder" / "x.lock"  # created with its folder
    with FileLock(path) as held:
        assert path.exists() and not FileLock(path).acquire(wait=False)
    assert held.acquire(wait=False)
    held.release()
    assert path.exists()  # the file stays: only the lock is dropped


def test_a_folder_itself_is_locked_without_a_file_in_it(tmp_path):
    """The pipeline adds each stage's cost to costs.json under a lock on its folder."""
    first = FileLock(tmp_path)
    assert first.acquire(wait=False)
    assert not FileLock(tmp_path).acquire(wait=False)  # another holder is refused
    first.release()
    second = FileLock(tmp_path)
    assert second.acquire(wait=False)
    second.release()
    assert list(tmp_path.iterdir()) == []
