"""Shared fixtures: tiny, fast configs on the synthetic dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.pg"]  # the session-wide PostgreSQL server fixture, postgres_url

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

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


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


def run_cli(*args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``selfnas ARGS`` in a fresh interpreter, as a user would."""
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "selfnas.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"selfnas {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


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
