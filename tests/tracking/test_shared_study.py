"""A search study shared by two `selfnas search` processes through PostgreSQL (as two machines
share one), tracked in an MLflow store on PostgreSQL: one experiment, one parent run per run
directory, every trial once as a run nested under the run directory that trained it."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, TINY, run_cli_together, set_args
from tests.tracking.test_end_to_end import MLFLOW, STUDY

pytestmark = pytest.mark.slow
EXPERIMENT = "shared-study"


def test_a_study_two_processes_share_is_one_experiment_with_every_trial_once(
    tmp_path, postgres_url, fresh_postgres_url
):
    """``postgres_url`` holds the Optuna study; MLflow gets a database of its own on the same server,
    empty, so both processes' first start creates its tables at the same moment."""
    name = f"t{uuid.uuid4().hex[:8]}"
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    elsewhere.mkdir()  # the processes' cwd: MLflow's default artifact root would be ./mlruns here
    env = dict(PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
               MLFLOW_TRACKING_URI=fresh_postgres_url, MLFLOW_EXPERIMENT_NAME=EXPERIMENT)  # fmt: skip
    args = ["search", "--storage", postgres_url, "--study-name", name, "--quiet",
            *set_args([*TINY, *STUDY, "search.trials=4", MLFLOW])]  # fmt: skip
    for done in run_cli_together([[*args, "--out", str(runs / f"m{i}")] for i in range(2)], elsewhere, env):
        assert done.returncode == 0, done.stderr[-2000:]
        assert "warning: tracker" not in done.stderr, done.stderr[-2000:]

    trained = {int(t.name): f"m{i}" for i in range(2) for t in (runs / f"m{i}").glob("trials/[0-9]*")}
    assert len(trained) >= 4  # the budget (one more when a process raced the end and its trial was cancelled)
    client = MlflowClient(tracking_uri=fresh_postgres_url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = {r.info.run_id: r for r in found if "mlflow.parentRunId" not in r.data.tags}
    nested = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["selfnas.run_dir"] for r in parents.values()) == [
        str(runs / "m0"), str(runs / "m1")
    ]  # fmt: skip
    assert all(r.info.status == "FINISHED" and r.data.tags["selfnas.study"] == name for r in parents.values())
    assert sorted(int(r.data.tags["selfnas.trial"]) for r in nested) == sorted(trained)  # each once
    for trial in nested:  # under the parent of the run directory that trained it
        number, parent = int(trial.data.tags["selfnas.trial"]), parents[trial.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags["selfnas.run_dir"] == str(runs / trained[number])
        assert trial.data.tags["selfnas.study"] == name
    best = {json.loads((runs / f"m{i}" / "study.json").read_text())["best_trial"] for i in range(2)}
    assert len(best) == 1  # both processes report the whole study
    assert {r.data.tags["selfnas.best_trial"] for r in parents.values()} == {str(*best)}
    tagged = [int(r.data.tags["selfnas.trial"]) for r in nested if r.data.tags["selfnas.best"] == "true"]
    assert tagged == [*best]
    # the artifacts of the experiment the first process created: beside the runs, not in the cwd
    beside = runs / "mlruns" / "artifacts"
    assert experiment.artifact_location == beside.as_uri()
    assert len(list(beside.rglob("genotype.json"))) == len(nested)
    assert list(elsewhere.iterdir()) == []
