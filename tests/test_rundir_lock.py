"""One writer per run directory, between real processes: a second writer or resumer is refused in
one line naming the holder, the holder's files stay whole, and a SIGKILLed holder never blocks.

The cheap tests hold the lock from a small Python process (it imports no torch); the slow ones
run two ``selfnas train`` commands on one --out, as the issue's users did.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfnas import locks
from selfnas.errors import RunDirError
from selfnas.io import read_jsonl
from selfnas.rundir import RunDir
from tests.conftest import REPO, TINY, run_cli, set_args

HOLDER = """
import sys, time
from selfnas.rundir import RunDir
run = RunDir.prepare(sys.argv[1], resume=sys.argv[2] == "resume")
if sys.argv[2] == "new":
    run.write_text("config.yaml", "data: {name: synthetic}\\n")
    run.write_status("running", step=3, total_steps=10)
print("held", flush=True)
time.sleep(600)
"""


def hold(path: Path, how: str = "new") -> subprocess.Popen[str]:
    """A process that opens ``path`` as a run (``new`` or ``resume``) and keeps it until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), how], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture
def held(tmp_path):
    run = tmp_path / "run"
    proc = hold(run)
    yield run, proc
    kill(proc)


@pytest.mark.parametrize("how", ["new", "overwrite", "resume"])
def test_a_second_writer_is_refused_naming_the_holder(held, how):
    run, proc = held
    with pytest.raises(RunDirError) as refused:
        RunDir.prepare(run, overwrite=how == "overwrite", resume=how == "resume")
    message = str(refused.value)
    assert "\n" not in message and f"{run} is in use by pid {proc.pid} on {socket.gethostname()}" in message
    assert "HOLDER" not in message and "-c" in message and "since 20" in message  # its command, its start
    # nothing of the holder's was touched: --overwrite deleted nothing
    assert (run / "config.yaml").read_text() == "data: {name: synthetic}\n"
    owner = RunDir(run).owner()
    assert owner is not None and owner["pid"] == proc.pid
    assert RunDir(run).state() == "running"


def test_a_sigkilled_holder_never_blocks(held):
    run, proc = held
    kill(proc)
    assert (run / locks.LOCK_FILE).exists()  # the file stays; the kernel dropped the lock
    assert RunDir(run).owner() is None and RunDir(run).state() == "interrupted"
    with locks.scope():
        resumed = RunDir.prepare(run, resume=True)
        assert RunDir(run).owner()["pid"] == os.getpid()
    assert resumed._lock is not None and not resumed._lock.held  # released at the end of the scope
    assert not (run / locks.LOCK_FILE).exists()  # and its file removed
    kill(hold(run, "resume"))  # another process may take it now


def test_two_processes_starting_at_once_get_one_lock(tmp_path):
    """Eight processes open one new run at the same moment: exactly one holds it."""
    run = tmp_path / "run"
    code = """
import sys, time
from selfnas.rundir import RunDir
from selfnas.errors import RunDirError
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    run = RunDir.prepare(sys.argv[1])
except RunDirError as e:
    print("refused", e, flush=True)
else:
    print("held", flush=True)
    time.sleep(600)
"""
    start = str(time.time() + 1.0)
    command = [sys.executable, "-c", code, str(run), start]
    procs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(8)]
    try:
        answers = [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]
    finally:
        for p in procs:
            kill(p)
    assert sum(a == "held" for a in answers) == 1, answers
    assert all(a == "held" or (a.startswith("refused") and "is in use by pid" in a) for a in answers), answers


def test_the_lock_is_reentrant_in_one_process_and_released_by_scope(tmp_path):
    """A command that trains and then evaluates a run takes its lock twice: one process, no refusal."""
    with locks.scope():
        first = RunDir.prepare(tmp_path / "run")
        again = RunDir(tmp_path / "run")
        again.lock()
        assert again._lock is first._lock and (tmp_path / "run" / ".lock").exists()
    assert not first._lock.held and not (tmp_path / "run" / ".lock").exists()


def test_an_early_error_removes_the_lock_with_the_folder(tmp_path):
    run = RunDir.prepare(tmp_path / "runs" / "new")
    run.remove_created()
    assert not (tmp_path / "runs").exists()


# -- real selfnas commands -------------------------------------------------------------------------

LONG = [*set_args(TINY), *set_args(["run.eval_at_end=false", "run.knn_every=0", "optim.epochs=4"]), "--quiet"]


def start_train(out: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "selfnas.cli", "train", "--out", str(out), *LONG, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_owner(out: Path, proc: subprocess.Popen[str]) -> None:
    """Until ``proc`` holds the run (it imports torch first: seconds)."""
    for _ in range(1200):
        owner = RunDir(out).owner() if out.is_dir() else None
        if owner and owner.get("pid") == proc.pid:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the first process never took the lock")


def refused_line(proc: subprocess.CompletedProcess[str], holder: int) -> str:
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert f"is in use by pid {holder} on {socket.gethostname()} (selfnas train --out" in err, err
    return err


def steps(out: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "step"]


@pytest.mark.slow
def test_two_selfnas_train_on_one_out(tmp_path):
    """The issue's two terminals: the second refuses in one line naming the first; the first's run
    ends whole (its metric steps once each, in order; its weights load)."""
    out = tmp_path / "same"
    first = start_train(out)
    wait_for_owner(out, first)
    first.send_signal(signal.SIGSTOP)  # the first keeps its lock while the second starts
    try:
        refused_line(run_cli("train", "--out", str(out), *LONG), first.pid)
        refused_line(run_cli("train", "--out", str(out), *LONG, "--overwrite"), first.pid)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    done = steps(out)
    assert done == sorted(set(done)) and done[-1] == 28, done
    assert load_file(str(out / "model.safetensors"))
    assert json.loads((out / "status.json").read_text())["state"] == "finished"
    assert not (out / locks.LOCK_FILE).exists()


@pytest.mark.slow
def test_a_sigkilled_run_two_resumers(tmp_path):
    """kill -9 mid-run frees the lock (no file to delete by hand): ``selfnas info`` says interrupted;
    of two --resume, the second refuses naming the first, which ends as an uninterrupted run."""
    reference = tmp_path / "reference"
    run_cli("train", "--out", str(reference), *LONG, check=True)
    out = tmp_path / "run"
    first = start_train(out, *set_args(["run.checkpoint_every=1", "run.log_every=1"]))
    wait_for_owner(out, first)
    while not (out / "checkpoints" / "last.safetensors").exists() or len(steps(out)) < 3:
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    info = run_cli("info", str(out), "--json", check=True)
    assert json.loads(info.stdout)["status"]["state"] == "interrupted"
    resumer = start_train(out, "--resume")
    wait_for_owner(out, resumer)
    resumer.send_signal(signal.SIGSTOP)
    try:
        refused_line(run_cli("train", "--out", str(out), *LONG, "--resume"), resumer.pid)
    finally:
        resumer.send_signal(signal.SIGCONT)
    _, err = resumer.communicate(timeout=600)
    assert resumer.returncode == 0, err
    a, b = load_file(str(out / "model.safetensors")), load_file(str(reference / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)
