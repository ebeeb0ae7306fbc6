"""The budget of a shared study: which trials count, which are dead, and when the study is done.

Every process that joins a study (a local worker, a ``selfnas search`` on another machine, a
resumed one) follows the same rule, so the study ends clean whichever of them die:

* ``search.trials`` counts **results**: trials that finished COMPLETE, PRUNED, or FAIL as a
  result (a collapsed or non-finite candidate; a trial whose worker died more than
  :data:`MAX_RETRIES` times). A trial failed because its worker died, and then retried, is not
  a result (its retry is); a cancelled trial is never one.
* A RUNNING trial is **dead** when its worker is a process of this machine that no longer exists
  (each trial records host, pid and the process's start time as ``owner``), when its heartbeat
  is older than the storage's grace period (RDB storages, any machine), or when it has had no
  owner for :data:`OWNERLESS_S` seconds as seen by one process (a worker killed between creating
  a trial and claiming it). Any process that sees a dead trial fails it (one of them wins) and
  enqueues a **retry**: the same parameters, ``failed_trial`` and ``retry_history`` recorded.
* A trial **runs only if** fewer than ``search.trials`` trials numbered before it are results,
  RUNNING or WAITING; otherwise it is **cancelled** at once (FAIL, user attribute ``cancelled``,
  nothing sampled or trained, not counted). So a queued retry whose budget was spent meanwhile is
  cancelled by whoever takes it, never left WAITING, and racing workers never overshoot.
* A process starts a new trial only while results + RUNNING + WAITING < ``search.trials``; it
  **returns only when** the study holds no RUNNING and no WAITING trial: until then it waits
  for the other processes' trials, fails the dead ones and runs (or cancels) their retries.
* A study whose results reach ``search.trials`` with nothing RUNNING or WAITING is
  **finished**: resuming it runs nothing and writes nothing to the study.

:func:`check_finished` lists what breaks these promises in a study that has ended (the chaos test
runs it after killing workers and restarting the database); :func:`tally` counts how its trials
ended.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

#: a RUNNING trial without an owner for this long (seen by one process) was abandoned at birth
OWNERLESS_S = 60.0
#: a candidate whose trial died this many times more is a failed result, not retried again (it may
#: be what kills its workers, e.g. out of memory); kills by a person rarely hit one candidate so often
MAX_RETRIES = 10


class BudgetSpent(Exception):
    """A trial that started after the budget was taken: cancelled, not run (see the module)."""


def owner() -> dict[str, Any]:
    """Who runs a trial: host, pid and the process's start time (a reused pid is not alive)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid())}


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has ended: no start time


def worker_gone(who: Any) -> bool | None:
    """True when the process that owns a trial has ended, False when it runs, None when this
    machine cannot tell (another host, or no owner recorded)."""
    if not isinstance(who, dict) or who.get("host") != socket.gethostname():
        return None
    pid = who.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: alive
        return False
    started = _process_start(pid)
    if started is None:
        return Path("/proc").is_dir()  # a zombie, or gone since; without /proc: alive
    return who.get("started") not in (None, started)  # the pid now belongs to another process


def retry_of(trial: FrozenTrial) -> int | None:
    """The number of the failed trial this one retries (the first of its chain)."""
    return trial.system_attrs.get("failed_trial")


def cancelled(trial: FrozenTrial) -> bool:
    return "cancelled" in trial.user_attrs


def budget_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The results: the trials that count toward ``search.trials`` (see the module)."""
    retried = {retry_of(t) for t in trials} | {
        n for t in trials for n in t.system_attrs.get("retry_history", ())
    }
    return [t for t in trials if t.state.is_finished() and t.number not in retried and not cancelled(t)]


def retry_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue the dead ``trial`` again with its parameters (what Optuna's retry callback does,
    without the dead worker's attributes: a retry is claimed afresh by whoever runs it)."""
    history = [*trial.system_attrs.get("retry_history", ()), trial.number]
    if len(history) > MAX_RETRIES:
        return
    system = {**copy.deepcopy(trial.system_attrs), "failed_trial": history[0], "retry_history": history}
    study.add_trial(optuna.create_trial(state=TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions, system_attrs=system))  # fmt: skip


def fail_dead(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Fail a dead trial and enqueue its retry; False when another process did it first."""
    storage = study._storage
    try:
        if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    retry_trial(study, storage.get_trial(trial._trial_id))
    return True


@dataclass(frozen=True)
class Snapshot:
    """The study as one read saw it."""

    budget: int
    results: int
    running: int
    waiting: int

    @property
    def free(self) -> int:
        """Slots a new trial may take."""
        return self.budget - self.results - self.running - self.waiting

    @property
    def finished(self) -> bool:
        return self.results >= self.budget and not self.running and not self.waiting


class Ledger:
    """One process's view of the budget of ``study``: settles dead trials, says who may run."""

    def __init__(
        self,
        study: optuna.Study,
        budget: int,
        exclusive: bool = False,
        reconnected: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """``exclusive``: no other process can use this storage (SQLite in the run), so every
        RUNNING trial is dead when this process, between two of its trials, looks.
        ``reconnected``: ``time.monotonic()`` of this process's last recovery from a database
        outage (what it saw before is void: nobody could write during the outage)."""
        self.study, self.budget, self.exclusive, self.reconnected = study, budget, exclusive, reconnected
        self._ownerless: dict[int, float] = {}  # trial number -> when this process first saw it ownerless

    def trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def snapshot(self, trials: list[FrozenTrial] | None = None) -> Snapshot:
        """Read-only: counts as the study stands."""
        trials = self.trials() if trials is None else trials
        return Snapshot(self.budget, len(budget_trials(trials)),
                        sum(t.state == TrialState.RUNNING for t in trials),
                        sum(t.state == TrialState.WAITING for t in trials))  # fmt: skip

    def settle(self) -> Snapshot:
        """Fail the dead trials (each retried once it is failed), then count."""
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)  # RDB: stale heartbeats, retried by retry_trial
        trials = self.trials()
        dead = self.dead(trials)
        if any([fail_dead(self.study, t) for t in dead]):
            trials = self.trials()
        return self.snapshot(trials)

    def dead(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """The RUNNING trials of ``trials`` that this process can tell are dead."""
        now, back = time.monotonic(), self.reconnected()
        seen: dict[int, float] = {}
        dead = []
        for t in trials:
            if t.state != TrialState.RUNNING:
                continue
            who = t.user_attrs.get("owner")
            if self.exclusive:  # the storage is this process's, and it is between trials
                dead.append(t)
            elif who is None:  # nobody claimed it yet; an outage voids what was seen before it
                first = self._ownerless.get(t.number, now)
                seen[t.number] = first = now if first < back else first
                if now - first >= OWNERLESS_S:
                    dead.append(t)
            elif worker_gone(who):
                dead.append(t)
        self._ownerless = seen
        return dead

    def may_run(self, number: int) -> bool:
        """Whether trial ``number`` has a slot: fewer than the budget before it are results,
        RUNNING or WAITING."""
        trials = self.trials()
        results = {t.number for t in budget_trials(trials)}
        taken = sum(
            t.number < number and (t.number in results or t.state in (TrialState.RUNNING, TrialState.WAITING))
            for t in trials
        )
        return taken < self.budget


# -- a study that has ended, checked ---------------------------------------------------------


def tally(trials: list[FrozenTrial]) -> dict[str, Any]:
    """How a study's trials ended: results, completions, dead-and-retried, retries, cancelled."""
    results = budget_trials(trials)
    counted = {t.number for t in results}
    return {
        "trials_in_study": len(trials),
        "results": len(results),
        "complete": sum(t.state.name == "COMPLETE" for t in results),
        "died_and_retried": sum(
            t.state.name == "FAIL" and t.number not in counted and not cancelled(t) for t in trials
        ),  # fmt: skip
        "retries": sum(retry_of(t) is not None for t in trials),
        "cancelled": sum(cancelled(t) for t in trials),
    }


def check_finished(trials: list[FrozenTrial], budget: int) -> list[str]:
    """What must hold once a shared study with ``budget`` has ended, however its workers died (the
    rule of this module; the chaos test checks it): exactly ``budget`` results, trial numbers
    contiguous, nothing RUNNING or WAITING, no parameter set run by unrelated trials, every dead
    worker's trial retried or counted once its retries ran out. Empty list: all of it holds."""
    problems = []
    results = budget_trials(trials)
    if len(results) != budget:
        problems.append(f"{len(results)} results for a budget of {budget}")
    numbers = sorted(t.number for t in trials)
    if numbers != list(range(len(trials))):
        problems.append("trial numbers are not contiguous")
    for state in ("RUNNING", "WAITING"):
        left = [t.number for t in trials if t.state.name == state]
        if left:
            problems.append(f"{state} trials left: {left}")
    roots: dict[str, set[int]] = {}
    for t in trials:
        if t.params:
            root = retry_of(t) if retry_of(t) is not None else t.number
            roots.setdefault(json.dumps(t.params, sort_keys=True), set()).add(root)
    repeated = [r for r in roots.values() if len(r) > 1]
    if repeated:
        problems.append(f"parameter sets run by unrelated trials: {repeated}")
    counted = {t.number for t in results}
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    for t in trials:  # a dead worker's trial: retried, or counted once its retries ran out
        dead = t.state.name == "FAIL" and "fail_reason" not in t.user_attrs and not cancelled(t)
        if (
            dead
            and t.number not in retried
            and not (t.number in counted and len(t.system_attrs.get("retry_history", ())) >= MAX_RETRIES)
        ):
            problems.append(f"trial {t.number} failed without a retry or a reason")
    return problems
