"""The evaluation's budget: a run trained on a subset is evaluated on a subset of that size by
``selfnas eval`` (stated in eval.json), and a line of time left is logged while it runs."""

import json

import pytest
from typer.testing import CliRunner

from selfnas import evaluation
from selfnas.cli import app
from selfnas.config import build_config
from selfnas.eval import probes
from selfnas.eval.eta import EvalEta
from selfnas.evaluation import evaluate
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import TINY

#: the synthetic data: 461 train images after the 10% validation split, 51 val, 128 test
SUBSET = 120


@pytest.fixture(scope="module")
def subset_run(tmp_path_factory):
    """A tiny run pretrained on a 120-image subset (data.train_limit), not evaluated."""
    path = tmp_path_factory.mktemp("budget") / "run"
    overrides = [*TINY, "optim.epochs=1", "run.knn_every=0", f"data.train_limit={SUBSET}"]
    Trainer(build_config(overrides=overrides), RunDir.prepare(path), quiet=True).fit()
    return path


def test_following_the_run_caps_every_split_at_its_training_subset(subset_run):
    result = evaluate(subset_run, device="cpu", linear=False, write=False, follow_run=True)
    assert result["n_train"] == SUBSET
    assert result["n_held_out"] == {"val": 51, "test": SUBSET}  # val holds fewer than the cap
    assert result["limits"] == {"train": SUBSET, "test": SUBSET}
    assert result["limits_from"] == {"train": "data.train_limit", "test": "data.train_limit"}


def test_the_library_default_still_uses_every_image(subset_run):
    result = evaluate(subset_run, device="cpu", linear=False, write=False)
    assert result["n_train"] == 461 and result["n_held_out"] == {"val": 51, "test": 128}
    assert result["limits_from"] == {"train": "all", "test": "all"}


def test_a_given_limit_wins_over_the_run_subset(subset_run):
    result = evaluate(subset_run, device="cpu", linear=False, write=False, follow_run=True, test_limit=30)
    assert result["n_train"] == SUBSET and result["n_held_out"] == {"val": 30, "test": 30}
    assert result["limits_from"] == {"train": "data.train_limit", "test": "argument"}


def test_the_eval_command_follows_the_run_and_says_so(subset_run):
    """``selfnas eval`` (in process: typer's runner) caps at the run's subset; --all-images does not."""
    followed = CliRunner().invoke(app, ["eval", str(subset_run), "--no-linear", "--quiet", "--device", "cpu"])
    assert followed.exit_code == 0, followed.output
    written = json.loads((subset_run / "eval.json").read_text())
    assert written["n_train"] == SUBSET and written["limits_from"]["train"] == "data.train_limit"
    assert "capped at the run's data.train_limit" in followed.output
    every = CliRunner().invoke(app, ["eval", str(subset_run), "--no-linear", "--quiet", "--all-images"])
    assert every.exit_code == 0, every.output
    assert json.loads((subset_run / "eval.json").read_text())["n_train"] == 461


def test_the_evaluation_logs_the_time_left(subset_run, monkeypatch):
    monkeypatch.setattr(probes, "FEATURE_CHUNK", 16)  # several reports a split
    monkeypatch.setattr(
        evaluation, "EvalEta", lambda inner, log, images: EvalEta(inner, log, images, every=0.0)
    )
    lines: list[str] = []
    monkeypatch.setattr(evaluation.TrainProgress, "log", lambda self, message: lines.append(message))
    evaluate(subset_run, device="cpu", linear=False, write=False, quiet=True, follow_run=True)
    etas = [line for line in lines if line.startswith("eta ")]
    assert any(f"of {SUBSET + 51 + SUBSET:,} images" in line for line in etas), lines
