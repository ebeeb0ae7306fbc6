"""Atomic writes (selfnas/io.py): a write that fails or is killed half-way leaves the old file whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from selfnas.io import atomic_write, atomic_write_text

OLD = "old content, whole\n"


def _half_then_raise(tmp: str) -> None:
    with open(tmp, "w") as fh:
        fh.write("new con")  # half of the new content reaches the disk ...
        fh.flush()
    raise OSError("disk full")  # ... then the writer fails


def test_a_write_that_raises_half_way_leaves_the_old_file_and_no_partial_one(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    target.write_text(OLD)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, _half_then_raise)
    assert target.read_text() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp file left behind


def test_a_first_write_that_raises_leaves_no_file_at_all(tmp_path: Path) -> None:
    target = tmp_path / "eval.json"
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, _half_then_raise)
    assert list(tmp_path.iterdir()) == []


KILLED_WRITER = """
import os, sys
from selfnas.io import atomic_write

def write(tmp):
    with open(tmp, "w") as fh:
        fh.write("new con")
        fh.flush()
    os._exit(9)  # killed half-way: no except clause, no finally runs

atomic_write(sys.argv[1], write)
"""


def test_a_process_killed_half_way_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "config.yaml"
    target.write_text(OLD)
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert target.read_text() == OLD
    # what the kill leaves is a hidden temp file, never a torn file under the real name
    assert all(p.name == "config.yaml" or p.name.startswith(".config.yaml.") for p in tmp_path.iterdir())


def test_a_successful_write_replaces_the_content_whole(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    target.write_text(OLD)
    atomic_write_text(target, "new content\n")
    assert target.read_text() == "new content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
