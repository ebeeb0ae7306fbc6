"""JSON Lines: only a torn last line (a write killed mid-way) is skipped; damage elsewhere is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfnas.errors import RunDirError
from selfnas.io import append_jsonl, read_jsonl
from tests.conftest import run_cli

GOOD = '{"step": 1}\n{"step": 2}\n'


def _write(tmp_path: Path, data: str | bytes) -> Path:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _error(path: Path) -> str:
    with pytest.raises(RunDirError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_jsonl(tmp_path / "absent.jsonl") == []


@pytest.mark.parametrize("tail", [b'{"step": 3, "lo', b"{", b'{"name": "caf\xc3'])  # last: mid-character
def test_a_torn_last_line_is_skipped(tmp_path: Path, tail: bytes) -> None:
    assert read_jsonl(_write(tmp_path, GOOD.encode() + tail)) == [{"step": 1}, {"step": 2}]


def test_an_unterminated_last_line_that_parses_is_kept(tmp_path: Path) -> None:
    assert read_jsonl(_write(tmp_path, GOOD + '{"step": 3}')) == [{"step": 1}, {"step": 2}, {"step": 3}]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    assert read_jsonl(_write(tmp_path, '\n{"step": 1}\n  \n{"step": 2}\n\n')) == [{"step": 1}, {"step": 2}]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n', 2),  # damage in the middle
        ('{"step": 1\n{"step": 2}\n', 1),  # the first line
        (GOOD + '{"step": 3, "lo\n', 3),  # a broken LAST line that has its newline: not a torn write
        ('{"step": 1}\n\n{"step": 2}\nnot json\n{"step": 4}', 4),  # blank lines still count
    ],
)
def test_a_corrupt_line_elsewhere_is_an_error_naming_the_line(tmp_path: Path, data: str, line: int) -> None:
    message = _error(_write(tmp_path, data))
    assert f"line {line} is not valid JSON" in message


def test_a_line_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    assert "line 2" in _error(_write(tmp_path, b'{"step": 1}\n{"name": "\xff"}\n{"step": 3}\n'))


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", [{"step": 9}]),
        (GOOD, [{"step": 1}, {"step": 2}, {"step": 9}]),
        (GOOD + '{"step": 3, "lo', [{"step": 1}, {"step": 2}, {"step": 9}]),  # the torn line is cut off
        (GOOD + '{"step": 3}', [{"step": 1}, {"step": 2}, {"step": 3}, {"step": 9}]),  # gets its newline
        ('{"step": 3, "lo', [{"step": 9}]),  # a file holding only a torn line
    ],
)
def test_append_after_a_torn_line_keeps_the_file_readable(tmp_path: Path, before: str, after: list) -> None:
    path = _write(tmp_path, before)
    append_jsonl(path, {"step": 9})
    assert read_jsonl(path) == after
    assert path.read_bytes().endswith(b"\n")


def test_cli_lists_a_damaged_metrics_file_first(tmp_path: Path) -> None:
    """A caller through the CLI: ``selfnas info`` on a run whose metrics.jsonl is damaged reports
    the run, with the damaged line named as its first problem (issue 37: exit ≠ 0 only when there
    is nothing to report)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: {name: synthetic}\n")
    (run / "status.json").write_text('{"state": "finished"}\n')
    (run / "metrics.jsonl").write_text('{"kind": "epoch", "step": 1}\ngarbage\n{"kind": "epoch"}\n')
    proc = run_cli("info", str(run))
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[0].startswith("problem") and "metrics.jsonl: 1 damaged line(s) (line 2)" in lines[0]
