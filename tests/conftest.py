"""Shared fixtures: tiny, fast configs on the synthetic dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

pytest_plugins = ["tests.pg"]  # the session-wide PostgreSQL server fixture, postgres_url

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: CI installs Fashion-MNIST, Chromium and PostgreSQL (.ci/run): there a missing one fails the run
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
#: words of a skip reason that name one of those requirements (see pytest_runtest_makereport)
CI_REQUIREMENTS = ("dataset-fashion-mnist", "chromium", "postgresql")

TINY = [
    "data.name=synthetic",
    "model.backbone_kwargs={width: 8, depths: [1, 1]}",
    "method.proj_hidden=32",
    "method.proj_out=16",
    "method.pred_hidden=8",
    "optim.batch_size=64",
    "optim.epochs=2",
    "run.knn_bank=256",
    "run.log_every=2",
    "run.checkpoint_every=3",
    "run.device=cpu",
    "run.threads=1",
]


def missing(what: str, install: str) -> NoReturn:
    """End the calling test (or fixture) because ``what`` is not installed: a skip that says how to
    install it, except under ``CI=true``, where it is a failure (CI installs everything)."""
    if IN_CI:
        pytest.fail(f"{what} is missing but CI=true: {install}", pytrace=False)
    pytest.skip(f"{what} is missing: {install}")


@pytest.fixture
def fashion_mnist() -> Path:
    """The installed Fashion-MNIST folder; skips without it (fails under ``CI=true``)."""
    if not FASHION_MNIST.is_dir():
        missing(f"Fashion-MNIST ({FASHION_MNIST})", "apt-get install dataset-fashion-mnist")
    return FASHION_MNIST


#: mark a test that needs the installed Fashion-MNIST (a skip, or under CI=true a failure, without it)
needs_fashion_mnist = pytest.mark.usefixtures("fashion_mnist")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Under ``CI=true``, a test skipped because Fashion-MNIST, Chromium or PostgreSQL is missing
    fails instead, however the skip was written (a ``skipif`` in a file that does not use
    :func:`missing` yet included)."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if any(word in reason.lower() for word in CI_REQUIREMENTS):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI=true, where it must run: {reason}"


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


def run_cli(
    *args: str, timeout: float = 300, check: bool = False, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run ``selfnas ARGS`` in a fresh interpreter, as a user would, in ``cwd`` (the repository)."""
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "selfnas.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"selfnas {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_cli_together(
    argvs: list[list[str]], cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 600
) -> list[subprocess.CompletedProcess[str]]:
    """Start ``selfnas ARGV`` for each of ``argvs`` at once (as on several machines), wait for all."""
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1", **(env or {}))
    procs = [
        subprocess.Popen([sys.executable, "-m", "selfnas.cli", *argv], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for argv in argvs
    ]  # fmt: skip
    done = []
    for proc, argv in zip(procs, argvs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return done


def run_cli_here(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run ``selfnas ARGS`` through the same ``selfnas.cli.main`` in this interpreter, its output
    captured and its exit code kept: for commands that end early (refusing bad input), where a
    fresh interpreter would spend seconds importing torch for a one-line answer. A traceback is not
    turned into exit code 1 here: the exception fails the test."""
    import contextlib
    import io

    from selfnas import cli

    out, err = io.StringIO(), io.StringIO()
    argv, here = sys.argv, os.getcwd()
    code = 0
    try:
        sys.argv = ["selfnas", *args]
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = argv
        os.chdir(here)
    return subprocess.CompletedProcess(["selfnas", *args], code, out.getvalue(), err.getvalue())


def set_args(overrides: list[str]) -> list[str]:
    out: list[str] = []
    for o in overrides:
        out += ["--set", o]
    return out


@pytest.fixture
def single_thread():
    """Tiny convs and fits: on the shared 2-core machine a second OpenMP thread costs far more
    than it gives (seen: 20x wall time), so these tests pin one thread and restore it after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
