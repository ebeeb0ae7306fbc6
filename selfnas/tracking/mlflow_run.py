"""The MLflow tracker: one MLflow run per selfnas run (its id kept in RUN/trackers.json), the
trials its search ran as nested runs. The store is ``MLFLOW_TRACKING_URI``, else a local SQLite
store in ``mlruns/`` beside the run directory. An experiment this tracker creates in a database
store keeps its artifacts beside the runs too (``mlruns/artifacts/``); a tracking server's
experiments use the server's artifact root, a file store's its own folder."""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path
from typing import Any

from selfnas.tracking.records import trial_architecture

LOCAL_FOLDER = "mlruns"
DEFAULT_EXPERIMENT = "selfnas"
#: a tracking server that does not answer costs seconds once, not minutes (the user's values win)
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
#: selfnas run state -> MLflow run status when the command ends
END_STATUS = {"finished": "FINISHED", "failed": "FAILED"}
TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
BATCH = 100  # params per log_batch call (MLflow's limit)
#: seconds a database store that refuses us is asked again: processes that open an empty database
#: at once race to create MLflow's tables and all but one fail (a server that is down costs
#: MLflow's own connection retries, over a minute, and is not asked again)
OPEN_RETRY_S = 30.0


def local_store(run_path: Path) -> tuple[str, str]:
    """The tracking URI and artifact folder of the local store beside ``run_path``."""
    folder = (run_path.resolve().parent / LOCAL_FOLDER).resolve()
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def is_database(uri: str) -> bool:
    """Whether ``uri`` names an SQL store (``sqlite:///``, ``postgresql://``, ``mysql+pymysql://``)."""
    from mlflow.store.db.db_types import DATABASE_ENGINES

    return urllib.parse.urlparse(uri).scheme.split("+")[0] in DATABASE_ENGINES


def artifact_location(uri: str, run_path: Path) -> str | None:
    """Where an experiment created in the store ``uri`` keeps its artifacts: beside the runs for a
    database (MLflow would use ``./mlruns`` of the folder the command happens to run in), else
    None, MLflow's choice (a tracking server's artifact root, a file store's own folder)."""
    return local_store(run_path)[1] if is_database(uri) else None


class MlflowTracker:
    name = "mlflow"

    def __init__(self, run_path: Path, section: dict[str, Any], context: dict[str, Any]) -> None:
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            artifacts = artifact_location(uri, run_path)
        else:
            uri, artifacts = local_store(run_path)
            (run_path.resolve().parent / LOCAL_FOLDER).mkdir(parents=True, exist_ok=True)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        self._open(uri, name, artifacts)
        self.study = context["tags"].get("selfnas.study")
        self.section = section
        if section.get("run_id") and section.get("uri") == uri:
            self.run_id = section["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")  # a resumed run goes on in its MLflow run
        else:
            self.run_id = self._start(run_path, context)
            section.clear()
            section.update(run_id=self.run_id, uri=uri, experiment_id=self.experiment)

    def _open(self, uri: str, name: str, artifacts: str | None) -> None:
        """Connect to the store and find or create the experiment ``name``; a database that
        refuses quickly is asked again, a second later, then two, four... for :data:`OPEN_RETRY_S`."""
        from mlflow.tracking import MlflowClient

        started, wait = time.monotonic(), 1.0
        while True:
            try:
                self.client = MlflowClient(tracking_uri=uri)
                self.experiment = self._experiment(name, artifacts)
                return
            except Exception:
                if not is_database(uri) or time.monotonic() - started + wait > OPEN_RETRY_S:
                    raise
            time.sleep(wait)
            wait *= 2

    def _experiment(self, name: str, artifacts: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifacts)
        except Exception:  # another machine of a shared study created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _start(self, run_path: Path, context: dict[str, Any]) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment, run_name=run_path.name, tags=context["tags"])
        params = [Param(k, v) for k, v in context["params"].items()]
        for start in range(0, len(params), BATCH):
            self.client.log_batch(run.info.run_id, params=params[start : start + BATCH])
        return run.info.run_id

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self._metrics(self.run_id, values, step)

    def _metrics(self, run_id: str, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])

    def log_artifacts(self, paths: list[Path], step: int, folder: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def log_trial(self, row: dict[str, Any], best: bool) -> str:
        """One trial as a run nested under the search's: value, scores, state, architecture."""
        from mlflow.entities import Param

        tags = {
            "mlflow.parentRunId": self.run_id,
            "selfnas.trial": str(row["number"]),
            "selfnas.state": row["state"],
            "selfnas.architecture": trial_architecture(row)[:5000],
            "selfnas.best": str(best).lower(),
        }
        if self.study:
            tags["selfnas.study"] = self.study
        run = self.client.create_run(self.experiment, run_name=f"trial {row['number']:04d}", tags=tags)
        run_id = run.info.run_id
        params = [Param(k, str(v)[:500]) for k, v in (row.get("params") or {}).items()]
        if params:
            self.client.log_batch(run_id, params=params[:BATCH])
        values = {
            f"{group}/{k}": v
            for group, key in (("score", "scores"), ("accuracy", "accuracy"))
            for k, v in (row.get(key) or {}).items()
            if isinstance(v, int | float)
        }
        if row.get("value") is not None:
            values["value"] = row["value"]
        if values:
            self._metrics(run_id, values, 0)
        if row.get("genotype") is not None:
            self.client.log_dict(run_id, row["genotype"], "genotype.json")
        self.client.set_terminated(run_id, status=TRIAL_STATUS.get(row["state"], "FINISHED"))
        return run_id

    def mark_best(self, row: dict[str, Any], trial_run: str | None, previous: str | None) -> None:
        """Tag the study's best trial on the search's run, and on its nested run when this run
        logged it (``trial_run``; a shared study's best may be another run directory's)."""
        if previous and previous != trial_run:
            self.client.set_tag(previous, "selfnas.best", "false")
        if trial_run:
            self.client.set_tag(trial_run, "selfnas.best", "true")
        self.client.set_tag(self.run_id, "selfnas.best_trial", str(row["number"]))

    def close(self, state: str) -> None:
        self.client.set_terminated(self.run_id, status=END_STATUS.get(state, "KILLED"))
