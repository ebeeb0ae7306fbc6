"""Experiment trackers (``run.trackers``: TensorBoard, MLflow) fed from a run's own files.

Every metric line goes through :func:`append_metrics` (the line into metrics.jsonl, then to the
run's trackers); the search study hands its trials to :func:`log_trials`, ``selfnas report`` and
``selfnas export`` their files to :func:`log_artifacts`. Trackers are imported only when a run's
config names one; a run without trackers pays one read of its config.yaml per process.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from selfnas.errors import ConfigError
from selfnas.io import append_jsonl
from selfnas.rundir import RunDir
from selfnas.tracking.session import close_all, session

__all__ = ["append_metrics", "close_all", "log_artifacts", "log_trials"]


def append_metrics(run: RunDir, record: dict[str, Any]) -> None:
    """Append ``record`` to RUN/metrics.jsonl and send it to the run's trackers."""
    append_jsonl(run.metrics, record)
    opened = session(run)
    if opened is not None:
        opened.log(record)


def log_artifacts(run: RunDir | str | Path, paths: list[Path], folder: str | None = None) -> None:
    """Log the files ``paths`` (those that exist; into ``folder`` of the tracker run) to the
    trackers of ``run``. A tracker that cannot be opened here is a warning: the report or export
    that calls this is written already."""
    try:
        opened = session(run if isinstance(run, RunDir) else RunDir(run))
    except ConfigError as exc:
        print(f"warning: {exc}", file=sys.stderr, flush=True)
        return
    if opened is not None:
        opened.artifacts(paths, folder)


def log_trials(run: RunDir, rows: list[dict[str, Any]], best: int | None) -> None:
    """Log a search study's finished trials (trials.jsonl rows) under the run; ``best`` is tagged."""
    opened = session(run)
    if opened is not None:
        opened.trials(rows, best)
