"""A write the machine refuses mid-run (full disk, quota, read-only, permissions) ends the command
in one line naming the file and what to do, exit 2, and the run resumes to the same result.

Fault injection at each write point: the checkpoint (safetensors reports the error as text), a
metrics line, eval.json, the export, the study's SQLite database; once more on a real 1 MB tmpfs
where the test may mount one (a private mount namespace: ``unshare -rm``).
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from selfnas import cli
from selfnas import io as selfnas_io
from selfnas.io import read_jsonl
from selfnas.training import checkpoint
from tests.conftest import REPO, TINY, set_args

COMMON = [*set_args(TINY), *set_args(["run.eval_at_end=false", "run.knn_every=0"]), "--quiet"]


def cli_run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``selfnas ARGS`` in this process, as ``main`` runs it: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["selfnas", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    return exit_.value.code or 0, capsys.readouterr().err.strip()


def one_line(code: int, err: str) -> str:
    """The error line that ends stderr (progress lines may come before it), without a traceback."""
    assert code == 2, err
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err
    return last


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["loss"] for r in read_jsonl(a / "metrics.jsonl")] == [
        r["loss"] for r in read_jsonl(b / "metrics.jsonl")
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same training, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "run"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(sys, "argv", ["selfnas", "train", "--out", str(out), *COMMON])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    monkeypatch.undo()
    assert not exit_.value.code
    return out


class RefusedFile:
    """A file open for writing whose every write fails as a full disk's does (errno, no name)."""

    def __init__(self, fh, code: int) -> None:
        self._fh, self._code = fh, code

    def write(self, data) -> int:
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()


def refuse_writes(monkeypatch, name: str, code: int, after: int = 0) -> None:
    """Every write to a file called ``name`` (or a temp file of it) through :mod:`selfnas.io` fails
    with ``code``, after the first ``after`` opens of it."""
    opened = [0]

    def open_(file, mode="r", *args, **kwargs):
        fh = open(file, mode, *args, **kwargs)
        base = Path(file).name
        if any(m in mode for m in "wa") and (base == name or base.startswith(f".{name}.")):
            opened[0] += 1
            if opened[0] > after:
                return RefusedFile(fh, code)
        return fh

    monkeypatch.setattr(selfnas_io, "open", open_, raising=False)


def test_checkpoint_on_a_full_disk(monkeypatch, capsys, tmp_path, reference):
    """safetensors' own error text ("No space left on device (os error 28)") at the second
    checkpoint: one line naming the checkpoint; --resume ends as the uninterrupted run."""
    out = tmp_path / "run"
    save = checkpoint.save_file
    calls = [0]

    def full(tensors, filename, metadata=None):
        calls[0] += 1
        if calls[0] == 3:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", full)
    err = one_line(*cli_run(monkeypatch, capsys, "train", "--out", str(out), *COMMON))
    assert f"no space left on the device writing {out / 'checkpoints' / 'last.safetensors'}" in err
    assert err.endswith("free space, then run the same command with --resume"), err
    assert not list(out.rglob("*.tmp"))  # the refused temp file is gone; the last checkpoint is whole
    monkeypatch.setattr(checkpoint, "save_file", save)
    assert cli_run(monkeypatch, capsys, "train", "--out", str(out), *COMMON, "--resume")[0] == 0
    same_run(out, reference)


def test_metrics_line_over_quota(monkeypatch, capsys, tmp_path, reference):
    out = tmp_path / "run"
    refuse_writes(monkeypatch, "metrics.jsonl", errno.EDQUOT, after=3)
    err = one_line(*cli_run(monkeypatch, capsys, "train", "--out", str(out), *COMMON))
    assert f"the disk quota is exceeded writing {out / 'metrics.jsonl'}; free space or raise" in err
    assert err.endswith("then run the same command with --resume"), err
    monkeypatch.undo()
    assert cli_run(monkeypatch, capsys, "train", "--out", str(out), *COMMON, "--resume")[0] == 0
    same_run(out, reference)


@pytest.mark.slow  # a full evaluation / export / study: seconds each
def test_eval_json_on_a_read_only_disk(monkeypatch, capsys, tmp_path):
    """The training finished, its evaluation could not be written: the line says to evaluate."""
    out = tmp_path / "run"
    args = [*set_args(TINY), *set_args(["run.knn_every=0", "optim.epochs=1"]), "--quiet"]
    refuse_writes(monkeypatch, "eval.json", errno.EROFS)
    err = one_line(*cli_run(monkeypatch, capsys, "train", "--out", str(out), *args))
    assert f"the file system is read-only writing {out / 'eval.json'}; make it writable" in err
    assert err.endswith(f"then finish the evaluation with `selfnas eval {out}`"), err
    assert not (out / "eval.json").exists()
    monkeypatch.undo()
    assert cli_run(monkeypatch, capsys, "eval", str(out), "--device", "cpu", "--quiet")[0] == 0
    assert (out / "eval.json").is_file()


@pytest.mark.slow  # a full evaluation / export / study: seconds each
def test_export_without_permission(monkeypatch, capsys, reference, tmp_path):
    run = Path(shutil.copytree(reference, tmp_path / "run"))
    refuse_writes(monkeypatch, "backbone.safetensors", errno.EACCES)
    err = one_line(*cli_run(monkeypatch, capsys, "export", str(run), "--out", str(run / "export")))
    assert f"permission denied writing {run / 'export' / 'backbone.safetensors'}" in err
    assert err.endswith("then run the same command again (it continues where it stopped)"), err
    monkeypatch.undo()
    assert cli_run(monkeypatch, capsys, "export", str(run), "--out", str(run / "export"))[0] == 0
    assert (run / "export" / "backbone.safetensors").is_file()


CELLS = set_args(
    ["search.space=cells", "search.strategy=random", "search.nodes=2", "search.cell_width=4",
     "search.cell_layers=3", "search.trial_epochs=1", "search.pruner=none", "search.trials=2",
     "search.label_eval=false"]
)  # fmt: skip


@pytest.mark.slow  # a full evaluation / export / study: seconds each
def test_study_database_full(monkeypatch, capsys, tmp_path):
    """SQLite's own "database or disk is full" when the first trial's value is stored is one line,
    not 90 s of retries for a lost connection; --resume finishes the study."""
    import sqlalchemy

    out = tmp_path / "search"

    def fill_after_first_trial(conn, cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO TRIAL_VALUES"):
            raise sqlite3.OperationalError("database or disk is full")

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", fill_after_first_trial)
    try:
        code, stderr = cli_run(monkeypatch, capsys, "search", "--out", str(out), *COMMON, *CELLS)
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", fill_after_first_trial)
    err = one_line(code, stderr)
    assert "lost the study database" not in stderr  # not taken for a lost connection and retried
    assert "no space left on the device writing the study database; free space" in err
    assert err.endswith("then run the same command with --resume"), err
    assert cli_run(monkeypatch, capsys, "search", "--out", str(out), *COMMON, *CELLS, "--resume")[0] == 0
    assert (out / "genotype.json").is_file()


MOUNT_SCRIPT = r"""
set -u
mount -t tmpfs -o size=1200k tmpfs "$DISK" || exit 90
head -c 1000k /dev/zero > "$DISK/filler"
"$PY" -m selfnas.cli train --out "$DISK/run" "$@" > "$LOG/first.out" 2> "$LOG/first.err"
echo $? > "$LOG/first.rc"
rm "$DISK/filler"
"$PY" -m selfnas.cli train --out "$DISK/run" "$@" --resume > "$LOG/second.out" 2> "$LOG/second.err"
echo $? > "$LOG/second.rc"
cp "$DISK/run/model.safetensors" "$DISK/run/metrics.jsonl" "$LOG/"
"""


@pytest.mark.slow
def test_a_real_full_file_system(tmp_path, reference):
    """A 1.2 MB tmpfs, nearly filled: the training stops in one line; space freed, --resume ends
    as the uninterrupted run."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed: no private mount namespace for a tiny file system")
    disk, log = tmp_path / "disk", tmp_path / "log"
    disk.mkdir()
    log.mkdir()
    env = dict(os.environ, DISK=str(disk), LOG=str(log), PY=sys.executable, PYTHONHASHSEED="0",
               OMP_NUM_THREADS="1")  # fmt: skip
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", MOUNT_SCRIPT, "sh", *COMMON], env=env, cwd=REPO,
                          timeout=600, capture_output=True, text=True)  # fmt: skip
    if proc.returncode == 90 or (proc.returncode != 0 and not (log / "first.rc").exists()):
        pytest.skip(f"this machine does not let the test mount a tmpfs: {proc.stderr.strip()[:200]}")
    rc = int((log / "first.rc").read_text())
    err = one_line(rc, (log / "first.err").read_text().strip())
    assert err.startswith(f"error: no space left on the device writing {disk / 'run'}/"), err
    assert err.endswith("free space, then run the same command with --resume"), err
    assert (log / "second.rc").read_text().strip() == "0", (log / "second.err").read_text()
    same_run(log, reference)
