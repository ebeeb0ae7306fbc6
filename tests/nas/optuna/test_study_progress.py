"""A study's progress lines read each trial's score back from the objective it minimised."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from selfnas.nas.optuna.study_progress import StudyProgress, score_of
from selfnas.score_records import score_record


def _done(number: int, value: float) -> optuna.trial.FrozenTrial:
    trial = create_trial(value=value, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)})
    trial.number = number
    return trial


@pytest.mark.parametrize("name, measured", [("ssl_loss", -0.8123), ("rankme", 17.25)])
def test_score_of_reads_the_measured_value_back(name: str, measured: float) -> None:
    spec = score_record(name)
    assert score_of(_done(0, spec.objective(measured)), spec) == pytest.approx(measured)
    failed = create_trial(
        state=TrialState.FAIL, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}
    )
    assert score_of(failed, spec) is None


def test_a_line_shows_the_measured_score_and_the_best_trial(capsys: pytest.CaptureFixture[str]) -> None:
    """Of two finished rankme trials (higher is better) the line names the larger measured value as
    the best, with its sign as measured (not the minimised objective's)."""
    spec = score_record("rankme")
    trials = [_done(0, spec.objective(12.0)), _done(1, spec.objective(30.0))]
    progress = StudyProgress("s", budget=2, score=spec, quiet=True)
    progress.begin([])
    progress.update(trials)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("trial 1") and "rankme 30 " in lines[-1]
    assert "best 30 (trial 1)" in lines[-1]
    assert all(t.state == TrialState.COMPLETE for t in trials)
