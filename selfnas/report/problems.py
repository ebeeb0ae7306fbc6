"""What is wrong with a run directory, as sentences that say what to do: the list that ``selfnas
report`` and ``selfnas info`` put at the top.

Reads only headers and small files (no model is built, no data loaded). A damaged file is a
problem on the list, never an exception.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from selfnas.locks import describe_holder
from selfnas.rundir import ACTIVE_STATES, RunDir
from selfnas.training.checkpoint import previous_path


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON objects of ``metrics.jsonl`` and its problems: a torn last line (a kill mid-write)
    and any damaged line in the middle, each left out."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [f"{path.name} is unreadable ({exc.strerror}); no curves or epochs shown"]
    *lines, tail = raw.split(b"\n")
    records, damaged = [], []
    for number, line in enumerate(lines, 1):
        if line.strip():
            record = _parse(line)
            if record is None:
                damaged.append(number)
            else:
                records.append(record)
    problems = []
    if damaged:
        shown = ", ".join(str(n) for n in damaged[:5]) + (", ..." if len(damaged) > 5 else "")
        problems.append(
            f"{path.name}: {len(damaged)} damaged line(s) (line {shown}) are not valid JSON and are "
            "left out; restore the file from a copy or delete those lines"
        )
    if tail.strip():
        record = _parse(tail)
        if record is None:
            problems.append(
                f"{path.name}: the last line is torn (the process was killed while writing it) and is "
                "left out; --resume drops it"
            )
        else:
            records.append(record)
    return records, problems


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def unreadable(path: Path) -> str | None:
    """Why the safetensors file ``path`` cannot be read (its header and sizes), or None."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.metadata()
    except (SafetensorError, OSError) as exc:
        return str(exc)
    return None


def run_problems(run: RunDir, config: dict[str, Any], status: dict[str, Any], evaluated: bool) -> list[str]:
    """The run's weights, evaluation, data name and lock, checked."""
    problems = []
    state = status.get("state")
    owner = run.owner()
    if owner is not None and owner.get("pid") != os.getpid():
        problems.append(
            f"a live process writes this run: {describe_holder(owner)}; its files change while you read them"
        )
    elif state in ACTIVE_STATES:
        problems.append(
            f"status.json says {state}, but no process holds the run: it was killed; continue it by "
            "running the command that made it again with --resume"
        )
    problems += _weights(run, state)
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    if config and not data.get("name"):
        problems.append(
            "config.yaml names no dataset (data.name): the run cannot be evaluated or resumed "
            "as it is; evaluate it with `selfnas eval RUN --data NAME`"
        )
    trained = state == "finished" and run.model.is_file() and not config.get("search")
    if trained and not evaluated:
        problems.append(f"no evaluation (eval.json): run `selfnas eval {run.path}`")
    return problems


def _weights(run: RunDir, state: Any) -> list[str]:
    if run.model.is_file():
        why = unreadable(run.model)
        if why is None:
            return []
        fix = (
            f"delete it and run `selfnas train --resume --out {run.path}` to write it again from the "
            "last checkpoint"
            if unreadable(run.checkpoint) is None and run.checkpoint.is_file()
            else "train the run again (--overwrite)"
        )
        return [f"model.safetensors is unreadable ({why}): the trained weights cannot be loaded; {fix}"]
    if state == "finished":
        return ["status.json says finished, but model.safetensors is missing: the run has no weights"]
    if run.checkpoint.is_file() and unreadable(run.checkpoint) is not None:
        previous = previous_path(run.checkpoint)
        if previous.is_file() and unreadable(previous) is None:
            return [f"the latest checkpoint is unreadable; --resume falls back to {previous.name}"]
        return ["no readable checkpoint: the run cannot be resumed; start it again with --overwrite"]
    return []
