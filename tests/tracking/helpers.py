"""A run directory with a tiny config naming trackers, and the metric lines a tiny run writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfnas.config import build_config, config_to_yaml
from selfnas.io import atomic_write_text
from selfnas.rundir import RunDir
from tests.conftest import TINY

#: the shapes of a real run's lines: steps, an epoch line, an evaluation without a step of its own
LINES: list[dict[str, Any]] = [
    {"kind": "step", "step": 2, "epoch": 0.5, "loss": 0.25, "lr": 0.01, "z_std": 0.2},
    {"kind": "step", "step": 4, "epoch": 1.0, "loss": 0.125, "lr": 0.02, "z_std": 0.21},
    {"kind": "epoch", "step": 4, "epoch": 1, "loss": 0.125, "knn_val": 0.5, "collapsed": False},
    {"kind": "step", "step": 6, "epoch": 1.5, "loss": 0.0625, "lr": 0.01, "z_std": 0.22},
    {"kind": "eval", "data": "synthetic", "knn": {"val": 0.75, "test": 0.5}, "linear": {"val": 0.8}},
]


def tracked_run(path: Path, *trackers: str) -> RunDir:
    """A prepared run directory whose config.yaml names ``trackers``, with a provenance file."""
    run = RunDir.prepare(path)
    config = build_config(overrides=[*TINY, f"run.trackers=[{', '.join(trackers)}]"])
    atomic_write_text(run.config, config_to_yaml(config))
    run.provenance.write_text(json.dumps({"command": ["selfnas", "train"], "seed": 0}))
    run.write_status("running", step=0)
    return run


def expected_points(records: list[dict[str, Any]]) -> set[tuple[str, int, float]]:
    """(name, step, value) of every number in ``records``, named KIND/FIELD (nested: KIND/A/B); a
    line without a step takes the highest step before it."""
    points, last = set(), 0
    for record in records:
        step = record.get("step", last)
        last = max(last, step)

        for key, value in record.items():
            if key not in ("kind", "step"):
                points |= {
                    (name, step, number) for name, number in _numbers(value, f"{record['kind']}/{key}")
                }
    return points


def _numbers(value: Any, name: str) -> list[tuple[str, float]]:
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _numbers(item, f"{name}/{key}")]
    return [(name, float(value))] if isinstance(value, int | float) else []
