"""A search's trials are tracked by their study, not each as a run of its own."""

from __future__ import annotations

from selfnas.config import build_config
from selfnas.nas.optuna.optuna_search import trial_config
from tests.conftest import TINY


def test_a_trial_run_names_no_tracker_of_its_own():
    study = build_config(overrides=[*TINY, "search.strategy=random", "run.trackers=[tensorboard, mlflow]"])
    assert study.run.trackers == ["tensorboard", "mlflow"]
    assert trial_config(study, {}).run.trackers == []
