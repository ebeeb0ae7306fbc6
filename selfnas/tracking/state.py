"""RUN/trackers.json: what each tracker of a run has already received, so a resumed run goes on in
the same tracker run and never logs a metric step twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfnas.io import atomic_write_json

STATE_FILE = "trackers.json"


class TrackerState:
    """One section per tracker: ``{"mlflow": {"run_id": ..., "steps": {"train/loss": 14}, ...}}``."""

    def __init__(self, run_path: Path) -> None:
        self.path = Path(run_path) / STATE_FILE
        self.data: dict[str, dict[str, Any]] = _read(self.path)

    def section(self, tracker: str) -> dict[str, Any]:
        return self.data.setdefault(tracker, {})

    def new_values(self, tracker: str, values: dict[str, float], step: int) -> dict[str, float]:
        """The values not yet logged at ``step`` (each name's steps only grow), marked as logged."""
        steps = self.section(tracker).setdefault("steps", {})
        fresh = {k: v for k, v in values.items() if step > steps.get(k, -1)}
        steps.update(dict.fromkeys(fresh, step))
        return fresh

    def last_step(self) -> int:
        """The highest step any tracker of the run has logged (0 before the first)."""
        return max((s for sec in self.data.values() for s in sec.get("steps", {}).values()), default=0)

    def save(self) -> None:
        atomic_write_json(self.path, self.data)


def _read(path: Path) -> dict[str, dict[str, Any]]:
    """The saved state; empty when missing or unreadable (a damaged file starts the trackers anew)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}
