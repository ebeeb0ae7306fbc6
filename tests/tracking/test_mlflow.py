"""The MLflow tracker queried back with MlflowClient from a real local store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from selfnas import tracking
from selfnas.tracking.mlflow_run import artifact_location
from tests.tracking.helpers import LINES, expected_points, tracked_run

TRIALS = [
    {"number": 0, "state": "COMPLETE", "value": -0.5, "params": {"op": "skip"}, "scores": {"rankme": 3.0},
     "accuracy": {}, "architecture": "skip-net", "genotype": {"kind": "heads", "ops": ["skip"]}},
    {"number": 1, "state": "PRUNED", "value": None, "params": {"op": "conv"}, "scores": {"rankme": 1.0},
     "accuracy": {}, "architecture": "conv-net", "genotype": {"kind": "heads", "ops": ["conv"]}},
    {"number": 2, "state": "COMPLETE", "value": -0.75, "params": {"op": "pool"}, "scores": {"rankme": 4.0},
     "accuracy": {}, "architecture": "pool-net", "genotype": {"kind": "heads", "ops": ["pool"]}},
]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating its tables is the slow part)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


@pytest.fixture
def client(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return MlflowClient(tracking_uri=store)


def run_id(run) -> str:
    return json.loads((run.path / "trackers.json").read_text())["mlflow"]["run_id"]


def history(client, rid) -> set[tuple[str, int, float]]:
    keys = client.get_run(rid).data.metrics
    return {(k, m.step, m.value) for k in keys for m in client.get_metric_history(rid, k)}


def test_params_tags_metrics_and_artifacts(tmp_path, client):
    run = tracked_run(tmp_path / "run", "mlflow")
    run.eval.write_text(json.dumps(LINES[-1]))
    for line in LINES:
        tracking.append_metrics(run, line)
    run.write_status("finished")
    tracking.close_all()
    found = client.get_run(run_id(run))
    assert found.data.params["optim.batch_size"] == "64"
    assert found.data.params["model.backbone_kwargs.depths"] == "[1, 1]"
    assert found.data.tags["selfnas.command"] == "selfnas train"
    assert found.data.tags["selfnas.seed"] == "0"
    assert found.data.tags["selfnas.git_commit"]
    assert found.info.status == "FINISHED"
    assert history(client, run_id(run)) == expected_points(LINES)
    assert [a.path for a in client.list_artifacts(run_id(run))] == ["eval.json"]


def test_an_experiment_made_in_a_database_keeps_its_artifacts_beside_the_runs(tmp_path, client, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "artifacts-beside-the-runs")  # created by this run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # MLflow's default root for a database store: ./mlruns of the cwd
    run = tracked_run(tmp_path / "runs" / "run", "mlflow")
    run.eval.write_text(json.dumps(LINES[-1]))
    for line in LINES:
        tracking.append_metrics(run, line)
    tracking.close_all()
    beside = tmp_path / "runs" / "mlruns" / "artifacts"
    assert client.get_experiment_by_name("artifacts-beside-the-runs").artifact_location == beside.as_uri()
    assert client.get_run(run_id(run)).info.artifact_uri.startswith(beside.as_uri())
    assert [p.name for p in beside.rglob("*") if p.is_file()] == ["eval.json"]
    assert list(elsewhere.iterdir()) == []


def test_only_a_database_store_gets_the_artifact_folder_beside_the_runs(tmp_path):
    beside = (tmp_path / "mlruns" / "artifacts").as_uri()
    run = tmp_path / "run"
    assert artifact_location(f"sqlite:///{tmp_path / 'mlflow.db'}", run) == beside
    assert artifact_location("postgresql+psycopg://u@db.example:5432/mlflow", run) == beside
    assert artifact_location("https://mlflow.example", run) is None  # the server's artifact root
    assert artifact_location("http://127.0.0.1:5000", run) is None
    assert artifact_location(Path(tmp_path / "store").as_uri(), run) is None  # a file store's own folder


def test_a_resumed_run_continues_its_mlflow_run_without_a_step_twice(tmp_path, client):
    run = tracked_run(tmp_path / "run", "mlflow")
    for line in LINES[:3]:
        tracking.append_metrics(run, line)
    first = run_id(run)
    tracking.close_all()  # the process ends; killed, the run reads interrupted
    assert client.get_run(first).info.status == "KILLED"
    for line in LINES[1:]:  # replayed from the checkpoint at step 2
        tracking.append_metrics(run, line)
    assert run_id(run) == first and client.get_run(first).info.status == "RUNNING"
    tracking.close_all()
    points = history(client, first)
    assert len({(k, s) for k, s, _ in points}) == len(points) == len(expected_points(LINES))
    runs = client.search_runs(
        [client.get_run(first).info.experiment_id], f"tags.`selfnas.run_dir` = '{run.path}'"
    )
    assert len(runs) == 1


def trained(run, *numbers: int) -> None:
    """The trial folders a search leaves in the run directory that trained them."""
    for number in numbers:
        (run.path / "trials" / f"{number:04d}").mkdir(parents=True)


def nested_runs(client, parent) -> dict[int, object]:
    experiment = client.get_run(parent).info.experiment_id
    found = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
    return {int(r.data.tags["selfnas.trial"]): r for r in found}


def test_trials_are_nested_runs_with_state_architecture_and_the_best_tagged(tmp_path, client):
    run = tracked_run(tmp_path / "run", "mlflow")
    trained(run, 0, 1, 2)
    tracking.log_trials(run, TRIALS[:2], best=0)
    tracking.log_trials(run, TRIALS, best=2)  # the study resumed: one more trial, a new best
    parent = run_id(run)
    by_trial = nested_runs(client, parent)
    assert sorted(by_trial) == [0, 1, 2]
    assert {n: r.data.tags["selfnas.state"] for n, r in by_trial.items()} == {
        0: "COMPLETE", 1: "PRUNED", 2: "COMPLETE"
    }  # fmt: skip
    assert by_trial[1].info.status == "KILLED" and by_trial[2].info.status == "FINISHED"
    assert by_trial[2].data.tags["selfnas.architecture"] == "pool-net"
    assert by_trial[2].data.metrics == {"value": -0.75, "score/rankme": 4.0}
    assert by_trial[2].data.params == {"op": "pool"}
    assert [n for n, r in by_trial.items() if r.data.tags["selfnas.best"] == "true"] == [2]
    assert client.get_run(parent).data.tags["selfnas.best_trial"] == "2"
    assert [a.path for a in client.list_artifacts(by_trial[0].info.run_id)] == ["genotype.json"]
    tracking.close_all()


def test_a_shared_study_nests_only_the_trials_this_run_directory_trained(tmp_path, client):
    """Another machine's run directory trained trial 1: it is that run's to log; the study's best
    is still named on this run, and this run's own former best is no longer tagged."""
    run = tracked_run(tmp_path / "run", "mlflow")
    trained(run, 0, 2)
    tracking.log_trials(run, TRIALS, best=0)
    parent = run_id(run)
    assert sorted(nested_runs(client, parent)) == [0, 2]
    assert nested_runs(client, parent)[0].data.tags["selfnas.best"] == "true"
    other_best = {**TRIALS[1], "state": "COMPLETE", "value": -0.9}
    tracking.log_trials(run, [TRIALS[0], other_best, TRIALS[2]], best=1)
    by_trial = nested_runs(client, parent)
    assert sorted(by_trial) == [0, 2]
    assert [r.data.tags["selfnas.best"] for r in by_trial.values()] == ["false", "false"]
    assert client.get_run(parent).data.tags["selfnas.best_trial"] == "1"
    tracking.close_all()


def test_a_tracker_that_is_down_warns_once_and_the_lines_are_written(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run = tracked_run(tmp_path / "run", "mlflow", "tensorboard")
    for line in LINES:
        tracking.append_metrics(run, line)
    tracking.close_all()
    err = capfd.readouterr().err
    assert err.count("warning: tracker mlflow failed") == 1, err
    assert [w for w in run.read_status()["warnings"] if "tracker mlflow" in w]
    assert (run.path / "tensorboard").is_dir()  # the other tracker goes on
