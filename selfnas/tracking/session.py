"""One process's trackers for one run directory: opened at the run's first metric line, fed every
line after it, closed when the process ends. A tracker that fails is warned about once and left
out; training goes on."""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from selfnas.errors import ConfigError
from selfnas.provenance import selfnas_version
from selfnas.rundir import RunDir
from selfnas.tracking.records import flat_config, metric_values
from selfnas.tracking.state import TrackerState

#: the tracker name -> (module, class, the package it imports)
BACKENDS = {
    "tensorboard": ("selfnas.tracking.tb", "TensorBoardTracker", "tensorboard"),
    "mlflow": ("selfnas.tracking.mlflow_run", "MlflowTracker", "mlflow"),
}
EXTRA = "pip install 'selfnas[tracking]'"
#: the trial states that end a trial (the others are still running or waiting)
DONE_TRIALS = ("COMPLETE", "PRUNED", "FAIL")
#: where a search trains each trial: RUN/trials/NNNN (selfnas.nas.optuna.optuna_search)
TRIALS_FOLDER = "trials"


class Session:
    def __init__(self, run: RunDir, names: list[str]) -> None:
        self.run = run
        self.state = TrackerState(run.path)
        self.trackers: list[Any] = []
        self.warned: set[str] = set()
        context = _context(run)
        for name in names:
            cls = _backend(name)
            try:
                self.trackers.append(cls(run.path, self.state.section(name), context))
            except Exception as exc:  # a tracker that is down or misconfigured: warned, left out
                self.warn(name, exc)
        self._save()

    def log(self, record: dict[str, Any]) -> None:
        """Send one metric line to every tracker; each name is sent once per step (a resumed run's
        replayed lines are not sent again)."""
        values = metric_values(record)
        step = record.get("step")
        step = int(step) if isinstance(step, int | float) else self.state.last_step()
        fresh = {t.name: self.state.new_values(t.name, values, step) for t in self.trackers}
        self._save()  # first: a kill between the two loses a point rather than writing one twice
        self._each(lambda t: fresh[t.name] and t.log_metrics(fresh[t.name], step))
        if record.get("kind") == "eval":
            self.artifacts([self.run.eval, self.run.genotype])

    def artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        found = [Path(p) for p in paths if Path(p).exists()]
        step = self.state.last_step()
        if found:
            self._each(lambda t: t.log_artifacts(found, step, folder))

    def trials(self, rows: list[dict[str, Any]], best: int | None) -> None:
        """Each finished trial that this run directory trained, once, as a nested run / its own
        event folder; the study's best tagged. A study shared by several run directories (other
        machines) is logged by each for the trials it ran: every trial once in all. A trial that
        never trained (cancelled past the budget, over the size cap) is in trials.jsonl only."""
        ran = [r for r in rows if r["state"] in DONE_TRIALS and self._ran_here(r["number"])]
        for tracker in list(self.trackers):
            section = self.state.section(tracker.name)
            logged: dict[str, str] = section.setdefault("trials", {})
            try:
                for row in ran:
                    if str(row["number"]) not in logged:
                        logged[str(row["number"])] = tracker.log_trial(row, row["number"] == best)
                        self._save()
                if best is not None and section.get("best_trial") != best:
                    ref = logged.get(str(best))  # None: another run directory ran it
                    tracker.mark_best(next(r for r in rows if r["number"] == best), ref, section.get("best"))
                    section.update(best=ref, best_trial=best)
                    self._save()
            except Exception as exc:
                self._drop(tracker, exc)

    def _ran_here(self, number: int) -> bool:
        return (self.run.path / TRIALS_FOLDER / f"{number:04d}").is_dir()

    def close(self) -> None:
        state = self.run.state()
        self._each(lambda t: t.close(state))
        self.trackers = []

    def _each(self, call: Any) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as exc:
                self._drop(tracker, exc)

    def _drop(self, tracker: Any, exc: Exception) -> None:
        self.trackers.remove(tracker)
        self.warn(tracker.name, exc)

    def warn(self, name: str, exc: Exception) -> None:
        """Say once, on stderr and among the run's status warnings, that a tracker stopped."""
        if name in self.warned:
            return
        self.warned.add(name)
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        message = f"tracker {name} failed and is left out for the rest of this command: {reason}"
        print(f"warning: {message}", file=sys.stderr, flush=True)
        try:
            status = self.run.read_status()
            if status.get("state"):
                self.run.write_status(status["state"], warnings=[*status.get("warnings", []), message])
        except OSError:
            pass

    def _save(self) -> None:
        try:
            self.state.save()
        except OSError as exc:  # a full disk is reported by the run's own next write
            for tracker in list(self.trackers):
                self._drop(tracker, exc)


def _backend(name: str) -> type:
    import importlib

    if name not in BACKENDS:
        raise ConfigError(f"run.trackers: unknown tracker {name!r}; pick from {', '.join(BACKENDS)}")
    module, cls, package = BACKENDS[name]
    try:
        importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"run.trackers names {name}, but {package} is not installed: {EXTRA}") from None
    return getattr(importlib.import_module(module), cls)


def _context(run: RunDir) -> dict[str, Any]:
    """What every tracker run records at its start: the flattened config and the run's tags."""
    config = _read_config(run)
    try:
        provenance = json.loads(run.provenance.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        provenance = {}
    commit = git_commit()
    tags = {
        "selfnas.command": " ".join(provenance.get("command", []))[:5000],
        "selfnas.version": selfnas_version(),
        "selfnas.seed": str(config.get("run", {}).get("seed", provenance.get("seed"))),
        "selfnas.git_commit": commit,
        "selfnas.run_dir": str(run.path.resolve()),
    }
    search = config.get("search")
    if isinstance(search, dict) and search.get("study_name"):
        tags["selfnas.study"] = str(search["study_name"])  # the runs of one shared study, found by it
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return {"params": flat_config(config), "tags": tags}


def _read_config(run: RunDir) -> dict[str, Any]:
    try:
        config = yaml.safe_load(run.config.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def trackers_of(run: RunDir) -> list[str]:
    names = _read_config(run).get("run", {}).get("trackers") or []
    return [str(n) for n in names] if isinstance(names, list) else []


def git_commit() -> str:
    """The commit of the selfnas source tree this process runs, or ``unknown`` (an installed wheel)."""
    source = Path(__file__).resolve().parents[2]
    try:
        proc = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "unknown"


_SESSIONS: dict[Path, tuple[int, Session | None]] = {}


def session(run: RunDir) -> Session | None:
    """This process's trackers of ``run`` (None when its config names none), opened on first use
    and again when config.yaml changed (an overwritten run)."""
    key = run.path.resolve()
    try:
        stamp = run.config.stat().st_mtime_ns
    except OSError:
        return None
    cached = _SESSIONS.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    if cached is not None and cached[1] is not None:
        cached[1].close()
    names = trackers_of(run)
    opened = Session(run, names) if names else None
    _SESSIONS[key] = (stamp, opened)
    return opened


def close_all() -> None:
    """End every tracker run this process opened (MLflow status from the run's state)."""
    while _SESSIONS:
        _, (_, opened) = _SESSIONS.popitem()
        if opened is not None:
            opened.close()


atexit.register(close_all)
