"""Real runs with run.trackers: a tiny training run, its kill and resume, a 3-trial search and a
tracker that is down, read back with TensorBoard's event reader and MlflowClient."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from selfnas import tracking
from selfnas.api import search
from selfnas.config import build_config
from selfnas.io import read_jsonl
from selfnas.rundir import RunDir
from selfnas.training import trainer as trainer_mod
from selfnas.training.trainer import Trainer
from tests.conftest import TINY, run_cli, set_args
from tests.tracking.helpers import expected_points
from tests.tracking.test_tensorboard import assert_same_points, scalars

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]
BOTH = "run.trackers=[tensorboard, mlflow]"
MLFLOW = "run.trackers=[mlflow]"
#: three candidate cells scored at initialisation (no training): a real study in seconds
STUDY = ["search.space=cells", "search.strategy=random", "search.nodes=2", "search.cell_width=4",
         "search.cell_layers=3", "search.pruner=none", "search.label_eval=false", "search.trials=3",
         "search.score=params"]  # fmt: skip


def local_client(runs) -> MlflowClient:
    """The local store that a run without MLFLOW_TRACKING_URI writes beside itself."""
    return MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlruns' / 'mlflow.db'}")


def mlflow_id(run_path) -> str:
    return json.loads((run_path / "trackers.json").read_text())["mlflow"]["run_id"]


def history(client, rid) -> list[tuple[str, int, float]]:
    keys = client.get_run(rid).data.metrics
    return [(k, m.step, m.value) for k in keys for m in client.get_metric_history(rid, k)]


def test_a_trained_evaluated_exported_run_in_both_trackers(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "runs" / "tiny"
    run_cli("train", "--out", str(run), *set_args([*TINY, BOTH]), check=True)
    run_cli("export", str(run), "--out", str(tmp_path / "export"), check=True)
    expected = expected_points(read_jsonl(run / "metrics.jsonl"))
    assert_same_points(scalars(run / "tensorboard"), expected)
    client = local_client(tmp_path / "runs")
    found = client.get_run(mlflow_id(run))
    assert set(history(client, mlflow_id(run))) == expected and len(history(client, mlflow_id(run))) == len(
        expected
    )
    assert found.info.status == "FINISHED"
    assert (
        found.data.params["method.proj_out"] == "16"
        and found.data.params["run.trackers"] == "['tensorboard', 'mlflow']"
    )
    assert found.data.tags["selfnas.seed"] == "0" and found.data.tags["selfnas.command"].startswith(
        "cli.py train"
    )
    assert found.data.tags["selfnas.version"] == "0.1.0"
    assert "eval.json" in [a.path for a in client.list_artifacts(mlflow_id(run))]
    exported = [a.path for a in client.list_artifacts(mlflow_id(run), "export")]
    assert "export/backbone.safetensors" in exported and "export/MODEL_CARD.md" in exported


def test_a_killed_and_resumed_run_is_one_tracker_run_with_each_step_once(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = build_config(overrides=[*TINY, BOTH, "run.eval_at_end=false"])
    original = trainer_mod.save_checkpoint

    def crash_before(path, model, optimizer, extra):  # killed before the checkpoint of step 12
        if extra["step"] == 12:
            raise KeyboardInterrupt
        original(path, model, optimizer, extra)

    monkeypatch.setattr(trainer_mod, "save_checkpoint", crash_before)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, RunDir.prepare(tmp_path / "runs" / "r"), quiet=True).fit()
    tracking.close_all()  # the killed process is gone: its trackers closed, its lock released
    RunDir(tmp_path / "runs" / "r").release()
    monkeypatch.setattr(trainer_mod, "save_checkpoint", original)
    first = mlflow_id(tmp_path / "runs" / "r")
    sent = json.loads((tmp_path / "runs" / "r" / "trackers.json").read_text())["mlflow"]["steps"]
    assert sent["step/loss"] == 12  # the lines of steps 10 and 12 were sent; the resumed run replays them
    Trainer(config, RunDir.prepare(tmp_path / "runs" / "r", resume=True), quiet=True).fit(resume=True)
    tracking.close_all()
    run = tmp_path / "runs" / "r"
    expected = expected_points(read_jsonl(run / "metrics.jsonl"))
    assert mlflow_id(run) == first
    client = local_client(tmp_path / "runs")
    experiment = client.get_run(first).info.experiment_id
    assert len(client.search_runs([experiment], f"tags.`selfnas.run_dir` = '{run.resolve()}'")) == 1
    # the tracker keeps the values the killed process sent for steps 10 and 12: the same but for
    # the throughput, which is a timing
    expected = {p for p in expected if not p[0].endswith("_per_s")}
    logged = [p for p in history(client, first) if not p[0].endswith("_per_s")]
    assert len(logged) == len(set(logged)) == len(expected) and set(logged) == expected
    assert_same_points([p for p in scalars(run / "tensorboard") if not p[0].endswith("_per_s")], expected)


def test_a_three_trial_study_is_nested_runs_and_event_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    summary = search(build_config(overrides=[*TINY, *STUDY, BOTH]), out=tmp_path / "runs" / "s", quiet=True)
    tracking.close_all()
    run = tmp_path / "runs" / "s"
    rows = read_jsonl(run / "trials.jsonl")
    client = local_client(tmp_path / "runs")
    parent = mlflow_id(run)
    experiment = client.get_run(parent).info.experiment_id
    nested = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
    by_trial = {int(r.data.tags["selfnas.trial"]): r for r in nested}
    assert sorted(by_trial) == [r["number"] for r in rows] == [0, 1, 2]
    for row in rows:
        trial = by_trial[row["number"]]
        assert trial.data.tags["selfnas.state"] == row["state"] == "COMPLETE"
        assert trial.data.metrics["value"] == pytest.approx(row["value"])
        words = row["architecture"] or json.dumps(row["genotype"], sort_keys=True)  # cells: no words
        assert trial.data.tags["selfnas.architecture"] == words
        assert trial.data.tags["selfnas.best"] == str(row["number"] == summary["best_trial"]).lower()
    assert client.get_run(parent).data.tags["selfnas.best_trial"] == str(summary["best_trial"])
    assert sorted(p.name for p in (run / "tensorboard" / "trials").iterdir()) == ["0000", "0001", "0002"]


def test_a_finished_study_resumed_sends_no_trial_again(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "runs" / "s"
    run_cli("search", "--out", str(run), "--quiet", *set_args([*TINY, *STUDY, MLFLOW]), check=True)
    client = local_client(tmp_path / "runs")
    parent = mlflow_id(run)
    experiment = client.get_run(parent).info.experiment_id

    def runs_and_trials() -> tuple[list[str], list[int]]:
        found = client.search_runs([experiment])
        nested = [int(r.data.tags["selfnas.trial"]) for r in found if "mlflow.parentRunId" in r.data.tags]
        return [r.info.run_id for r in found if "mlflow.parentRunId" not in r.data.tags], sorted(nested)

    assert runs_and_trials() == ([parent], [0, 1, 2])
    resumed = run_cli("search", "--resume", "--out", str(run), check=True)
    assert "finished" in (resumed.stdout + resumed.stderr).lower()
    assert runs_and_trials() == ([parent], [0, 1, 2])
    (run / "study.json").unlink()  # the results written again, as when a newer selfnas words them otherwise
    run_cli("search", "--resume", "--out", str(run), check=True)
    assert (run / "study.json").exists() and runs_and_trials() == ([parent], [0, 1, 2])
    assert client.get_run(parent).info.status == "FINISHED"


def test_trials_a_killed_search_had_not_sent_are_sent_when_it_is_resumed(tmp_path, monkeypatch):
    """Killed after study.json was written but before its last trial reached MLflow: the resumed
    (finished) study sends that trial, and only that one."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "runs" / "s"
    run_cli("search", "--out", str(run), "--quiet", *set_args([*TINY, *STUDY, MLFLOW]), check=True)
    client = local_client(tmp_path / "runs")
    experiment = client.get_run(mlflow_id(run)).info.experiment_id
    state = json.loads((run / "trackers.json").read_text())
    client.delete_run(state["mlflow"]["trials"].pop("2"))  # as if the kill came before trial 2 was sent
    (run / "trackers.json").write_text(json.dumps(state))

    def nested() -> list[int]:
        found = client.search_runs([experiment])
        return sorted(int(r.data.tags["selfnas.trial"]) for r in found if "mlflow.parentRunId" in r.data.tags)

    assert nested() == [0, 1]
    run_cli("search", "--resume", "--out", str(run), check=True)
    assert nested() == [0, 1, 2]


def test_a_tracker_that_is_down_warns_once_and_the_run_trains_to_the_end(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run = tmp_path / "run"
    proc = run_cli("train", "--out", str(run), *set_args([*TINY, MLFLOW]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("warning: tracker mlflow failed") == 1, proc.stderr[-2000:]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and any("tracker mlflow" in w for w in status["warnings"])
    assert [r["kind"] for r in read_jsonl(run / "metrics.jsonl")][-1] == "eval"
