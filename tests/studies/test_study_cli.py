"""`selfnas study` as a user meets it: real spaces and scenarios, kill -9 and rerun, workers, errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import FASHION_MNIST, REPO, run_cli, set_args

SETS = [
    "study.space_kwargs={widths: [8], groups: [1, 2]}",  # CPU-sized variants only
    "model.backbone_kwargs={width: 8, depths: [1, 1]}",
    "method.proj_hidden=32",
    "method.proj_out=16",
    "optim.batch_size=64",
    "run.checkpoint_every=2",
    "run.log_every=1",
    "run.device=cpu",
    "run.threads=1",
]


def study_args(archs: int = 2) -> list[str]:
    return [
        "--space", "resnet-variants", "--archs", str(archs), "--scenarios", "fashion-mnist,fashion-coarse",
        "--limit", "256", "--epochs", "1", "--seed", "3", "--quiet", *set_args(SETS),
    ]  # fmt: skip


STUDY = study_args()
needs_fashion = pytest.mark.skipif(not FASHION_MNIST.exists(), reason="apt-get install dataset-fashion-mnist")


def _one_line_error(proc):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--space", "vgg-variants"], "unknown space"),
        (["--scenarios", "fashion-mnist,no-such-scenario"], "unknown scenario"),
        (["--pretrain-on", "everything"], "pretrain_on"),
        (["--set", "data.name=cifar10"], "--scenarios"),
        (["--archs", "0"], "archs"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, fragment):
    proc = run_cli("study", "--out", str(tmp_path / "s"), *STUDY, *args)
    assert fragment in _one_line_error(proc)
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted one-worker study."""
    out = tmp_path_factory.mktemp("reference") / "study"
    proc = run_cli("study", "--out", str(out), *STUDY, check=True)
    assert "linear accuracy on test" in proc.stdout
    return out


@needs_fashion
@pytest.mark.slow
def test_study_outputs_and_report(reference):
    summary = json.loads((reference / "summary.json").read_text())
    assert [r["arch"] for r in summary["table"]] == ["default", "a01", "a02"]
    assert len(summary["spearman"]) == 2 and summary["complete"]
    assert (reference / "plots" / "spearman.png").exists() and (reference / "plots" / "ranks.png").exists()
    run_cli("report", str(reference), check=True)
    assert "Ranking" in (reference / "report.html").read_text()
    proc = run_cli("study", "--out", str(reference), *study_args(archs=3))  # another plan
    assert "archs: 2 in the plan, 3 asked" in _one_line_error(proc)


@needs_fashion
@pytest.mark.slow
def test_kill_9_then_rerun_matches_uninterrupted(tmp_path, reference):
    out = tmp_path / "study"
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "selfnas.cli", "study", "--out", str(out), *STUDY]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = out / "archs" / "a01" / "checkpoints" / "last.safetensors"  # default done, a01 half-way
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "a01 never wrote a checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()
    finished = [out / "archs" / "default" / "model.safetensors", *sorted((out / "probes").glob("default.*"))]
    assert len(finished) == 3
    stamps = [p.stat().st_mtime_ns for p in finished]
    run_cli("study", "--out", str(out), "--resume", check=True)
    assert [p.stat().st_mtime_ns for p in finished] == stamps  # finished units were not redone
    assert (out / "summary.json").read_text() == (reference / "summary.json").read_text()


@needs_fashion
@pytest.mark.slow
def test_two_workers_match_one(tmp_path, reference):
    out = tmp_path / "study"
    run_cli("study", "--out", str(out), *STUDY, "--workers", "2", check=True)
    assert (out / "summary.json").read_text() == (reference / "summary.json").read_text()
