"""The budget rule of a shared study (selfnas/nas/optuna/study_ledger.py), on in-memory studies."""

import subprocess
import sys
import time

import optuna
import pytest

from selfnas.nas.optuna import study_ledger
from selfnas.nas.optuna.study_ledger import Ledger, budget_trials, fail_dead, owner, worker_gone

CHOICE = {"x": optuna.distributions.CategoricalDistribution(["a", "b", "c", "d"])}
RUNNING, WAITING = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING


def _ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_worker_is_gone_when_its_process_ended_or_its_pid_was_reused():
    me = owner()
    assert worker_gone(me) is False
    assert worker_gone({**me, "pid": _ended_pid()}) is True
    assert worker_gone({**me, "started": me["started"] - 1}) is True  # the pid now names another process
    assert worker_gone({**me, "host": "elsewhere"}) is None  # another machine: heartbeats decide
    assert worker_gone(None) is None
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # ended, not yet reaped by its parent
    while (
        subprocess.run(["ps", "-o", "stat=", "-p", str(zombie.pid)], capture_output=True, text=True).stdout[
            :1
        ]
        != "Z"
    ):
        time.sleep(0.05)
    try:
        assert worker_gone({**me, "pid": zombie.pid, "started": None}) is True
    finally:
        zombie.wait()


def _study(*states: str) -> optuna.Study:
    """A study with one trial per letter: C complete, R running (dead owner), W waiting, F failed."""
    study = optuna.create_study()
    for i, s in enumerate(states):
        x = {"x": "abcd"[i % 4]}
        if s == "C":
            study.add_trial(optuna.create_trial(params=x, distributions=CHOICE, value=float(i)))
        elif s == "F":
            study.add_trial(
                optuna.create_trial(state=optuna.trial.TrialState.FAIL, params=x, distributions=CHOICE)
            )
        elif s == "R":
            trial = study.ask(CHOICE)
            trial.set_user_attr("owner", {**owner(), "pid": _ended_pid()})
        elif s == "W":
            study.enqueue_trial(x)
    return study


def test_a_dead_trial_is_failed_once_and_retried_once_and_counts_once():
    study = _study("C", "R")
    ledger = Ledger(study, budget=2)
    assert ledger.snapshot().free == 0  # the dead trial holds its slot until it is settled
    dead = ledger.dead(study.trials)
    assert [t.number for t in dead] == [1]
    now = ledger.settle()
    assert (now.results, now.running, now.waiting) == (1, 0, 1)
    assert fail_dead(study, dead[0]) is False  # a second process that saw it too: no second retry
    retry = study.trials[2]
    assert retry.state == WAITING and retry.params == study.trials[1].params
    assert retry.system_attrs["failed_trial"] == 1 and "owner" not in retry.user_attrs
    study.tell(study.ask(), 0.5)  # the retry is popped and completes
    assert [t.number for t in budget_trials(study.trials)] == [0, 2]


def test_a_trial_runs_only_while_fewer_than_the_budget_come_before_it():
    study = _study("C", "C", "W", "C")
    ledger = Ledger(study, budget=3)
    assert ledger.may_run(2) and not ledger.may_run(4)  # before 4: 0, 1 and 3 done, 2 queued
    study.tell(study.ask(), 0.5)  # the queued trial 2 runs
    late = study.ask()  # trial 4, started when the budget was taken: cancelled, never counted
    late.set_user_attr("cancelled", "the budget was taken")
    study.tell(late, state=optuna.trial.TrialState.FAIL)
    assert [t.number for t in budget_trials(study.trials)] == [0, 1, 2, 3]
    assert Ledger(study, budget=5).may_run(5)  # a cancelled trial takes no slot


def test_an_ownerless_running_trial_is_dead_only_after_a_while(monkeypatch):
    study = optuna.create_study()
    study.ask(CHOICE)  # a worker killed between creating a trial and claiming it
    ledger = Ledger(study, budget=1)
    monkeypatch.setattr(study_ledger, "OWNERLESS_S", 0.3)
    assert ledger.dead(study.trials) == []
    time.sleep(0.35)
    assert [t.number for t in ledger.dead(study.trials)] == [0]
    reconnected = Ledger(study, budget=1, reconnected=time.monotonic)  # an outage just ended: look again
    reconnected.dead(study.trials)
    assert reconnected.dead(study.trials) == []


@pytest.mark.parametrize("exclusive", [True, False])
def test_sqlite_in_the_run_has_no_other_process_so_any_running_trial_is_dead(exclusive):
    study = optuna.create_study()
    trial = study.ask(CHOICE)
    trial.set_user_attr("owner", owner())  # even one that names this very process (a reused pid)
    assert bool(Ledger(study, budget=1, exclusive=exclusive).dead(study.trials)) is exclusive


def test_a_candidate_whose_trial_keeps_dying_becomes_a_failed_result(monkeypatch):
    monkeypatch.setattr(study_ledger, "MAX_RETRIES", 2)
    study = _study("R")
    for attempt in range(3):  # the first run and two retries, each killed
        dead = Ledger(study, budget=1).dead(study.trials)
        assert len(dead) == 1 and fail_dead(study, dead[0])
        if attempt < 2:
            retry = study.ask()  # a worker takes the retry, and is killed too
            retry.set_user_attr("owner", {**owner(), "pid": _ended_pid()})
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3  # no fourth attempt was queued
    assert [t.number for t in budget_trials(study.trials)] == [2]  # the last one counts, as a failure


def test_a_local_worker_past_its_share_leaves_the_last_slot_to_a_peer(monkeypatch):
    """Two local workers, budget 4, shares 2 + 2. Worker A has run its 2 when worker B finishes
    its first: for a moment nothing runs and one slot is free. B (share left) takes it at once;
    A (past its share) must wait a poll period and see it taken, not start a trial that the budget
    then cancels (seen once in the full suite as a fifth trial number)."""
    from selfnas.nas.optuna import optuna_search
    from selfnas.nas.optuna.study_ledger import Snapshot

    monkeypatch.setattr(optuna_search.time, "sleep", lambda s: None)
    views = iter([
        Snapshot(budget=4, results=0, running=0, waiting=0),  # A starts trial 0
        Snapshot(budget=4, results=1, running=1, waiting=0),  # A starts trial 1 (B runs one)
        Snapshot(budget=4, results=3, running=0, waiting=0),  # A at its share; B just finished
        Snapshot(budget=4, results=3, running=1, waiting=0),  # a poll later: B took the slot
        Snapshot(budget=4, results=4, running=0, waiting=0),  # done
    ])  # fmt: skip

    class Views:
        def settle(self):
            return next(views)

        def trials(self):
            return []

    started = []

    class Study:
        def optimize(self, objective, **kwargs):
            started.append(1)

    assert optuna_search.run_worker(Study(), None, Views(), share=2) == 2 and len(started) == 2
