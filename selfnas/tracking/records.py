"""Metric lines and configs as the flat name -> value maps that trackers take."""

from __future__ import annotations

import json
import math
from typing import Any

#: the longest parameter value logged (older MLflow servers refuse more than 500 characters)
MAX_PARAM_CHARS = 500


def metric_values(record: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of one metric line as ``{"KIND/NAME": value}``, nested sections joined
    with ``/`` (``eval/knn/test``); the ``kind`` and ``step`` fields are the name and the step."""
    kind = str(record.get("kind", "metric"))
    flat: dict[str, float] = {}
    _numbers({k: v for k, v in record.items() if k not in ("kind", "step")}, kind, flat)
    return flat


def _numbers(value: Any, name: str, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _numbers(item, f"{name}/{key}", out)
    elif isinstance(value, bool):
        out[name] = float(value)
    elif isinstance(value, int | float) and math.isfinite(value):
        out[name] = float(value)


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A config as ``{"optim.lr": "0.05", ...}``: dotted keys, values as text (lists and nulls
    written as YAML would), each cut to :data:`MAX_PARAM_CHARS`."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_config(value, f"{name}."))
        else:
            flat[name] = _text(value)[:MAX_PARAM_CHARS]
    return flat


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def trial_architecture(row: dict[str, Any]) -> str:
    """A trial's architecture in words (trials.jsonl's ``architecture``), else its genotype JSON."""
    if row.get("architecture"):
        return str(row["architecture"])
    return json.dumps(row.get("genotype"), sort_keys=True)
