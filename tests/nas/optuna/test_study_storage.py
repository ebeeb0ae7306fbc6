"""Shared Optuna studies: PostgreSQL with several workers and processes, dead trials retried."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import optuna
import pytest

from selfnas.api import search
from selfnas.config import build_config
from selfnas.io import read_jsonl
from selfnas.nas.optuna.optuna_search import (
    budget_trials,
    open_search_study,
    open_storage,
    run_search_study,
)
from selfnas.nas.spaces.optuna_spaces import study_space
from selfnas.rundir import RunDir
from tests.conftest import REPO, run_cli_together, set_args

CELLS = ["search.space=cells", "search.nodes=2", "search.cell_width=4", "search.cell_layers=3",
         "search.trial_epochs=1", "search.pruner=none", "search.label_eval=false"]  # fmt: skip

pytestmark = [
    pytest.mark.usefixtures("single_thread"),
    # these tests play a killed worker with study.ask(), outside Study.optimize
    pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize"),
]


def _trials(storage: str | optuna.storages.BaseStorage, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).trials


def test_two_local_workers_share_a_postgres_study_exactly(tmp_path, tiny_overrides, postgres_url):
    name = f"w{uuid.uuid4().hex[:8]}"
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=tpe", "search.trials=4",
                                  "search.n_workers=2", f"search.storage={postgres_url}",
                                  f"search.study_name={name}"])  # fmt: skip
    result = search(cfg, out=tmp_path / "s", quiet=True)
    trials = _trials(postgres_url, name)
    assert result["trials"]["COMPLETE"] == 4
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # none lost, none run twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(p.name for p in (tmp_path / "s" / "trials").iterdir()) == ["0000", "0001", "0002", "0003"]
    owners = {t.user_attrs["owner"]["pid"] for t in trials}
    assert len(owners) == 2  # both workers ran trials


def test_two_processes_with_their_own_run_directories_join_one_postgres_study(
    tmp_path, tiny_overrides, postgres_url
):
    """Two `selfnas search` commands (as on two machines) share a study by storage and name."""
    name = f"m{uuid.uuid4().hex[:8]}"
    args = ["search", "--space", "cells", "--strategy", "random", "--trials", "4", "--storage", postgres_url,
            "--study-name", name, "--quiet", *set_args([*tiny_overrides, *CELLS])]  # fmt: skip
    for done in run_cli_together([[*args, "--out", str(tmp_path / f"m{i}")] for i in range(2)]):
        assert done.returncode == 0, done.stderr[-2000:]
    trials = _trials(postgres_url, name)
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials)))  # contiguous: no trial lost
    assert all(t.state.is_finished() for t in trials)  # nothing left RUNNING
    assert 4 <= len(trials) <= 5  # the budget, plus at most one trial per extra process racing the end
    ran = [int(p.name) for i in range(2) for p in (tmp_path / f"m{i}" / "trials").iterdir()]
    assert sorted(ran) == numbers  # every trial ran in exactly one of the two processes
    for i in range(2):  # each process reports the whole shared study
        rows = read_jsonl(tmp_path / f"m{i}" / "trials.jsonl")
        assert len(rows) >= 4 and (tmp_path / f"m{i}" / "genotype.json").exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_trial_left_running_by_a_killed_process_is_retried_and_counted_once(tmp_path, tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.trials=3"])
    run = RunDir.prepare(tmp_path / "s")
    study = open_search_study(run, cfg.search, seed=0)
    orphan = study.ask()  # what a process killed mid-trial leaves behind
    genotype = study_space(cfg.search).suggest(orphan)
    orphan.set_user_attr("genotype", genotype.to_json())
    orphan.set_user_attr("owner", {"host": os.uname().nodename, "pid": _dead_pid()})
    alive = study.ask()  # a trial of a live process (this one) must be left alone
    alive.set_user_attr("owner", {"host": os.uname().nodename, "pid": os.getpid()})
    study.tell(alive, state=optuna.trial.TrialState.FAIL)

    summary = run_search_study(cfg, run, quiet=True)
    rows = read_jsonl(run.path / "trials.jsonl")
    assert [r["state"] for r in rows[:2]] == ["FAIL", "FAIL"]
    retry = [r for r in rows if r["retry_of"] == orphan.number]
    assert len(retry) == 1 and retry[0]["state"] == "COMPLETE"
    assert retry[0]["params"] == orphan.params  # the same candidate, run again
    # 3 = the killed trial and its retry counted once + the genuine failure + one more
    assert summary["trials"] == {"COMPLETE": 2, "PRUNED": 0, "FAIL": 2}
    assert len(rows) == 4


def test_simultaneous_first_starts_on_an_empty_database_all_open_it(fresh_postgres_url):
    """Issue 24 (1): processes started together on a new database each create Optuna's tables;
    every one must open the storage, none may fail on PostgreSQL's catalogue
    (UniqueViolation "pg_type_typname_nsp_index")."""
    barrier = threading.Barrier(8)
    errors: list[str] = []

    def first_start() -> None:
        barrier.wait()
        try:
            open_storage(fresh_postgres_url)
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            errors.append(str(exc))

    threads = [threading.Thread(target=first_start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert optuna.storages.RDBStorage(fresh_postgres_url).get_all_studies() == []  # the schema is whole


def _owned_running(storage: optuna.storages.BaseStorage, name: str, pid: int) -> bool:
    try:
        trials = _trials(storage, name)
    except KeyError:  # the study is not created yet
        return False
    return any(t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("owner", {}).get("pid") == pid
               for t in trials)  # fmt: skip


def test_a_worker_killed_mid_trial_leaves_nothing_behind_and_a_resume_changes_nothing(
    tmp_path, tiny_overrides, postgres_url
):
    """Issue 24 (2): 2 processes on --trials 6, one killed with SIGKILL mid-trial. The survivor
    must not exit while the dead worker's trial is RUNNING; the study ends with exactly 6
    finished trials that count, nothing RUNNING or WAITING; resuming the killed process then
    reports the study finished and changes nothing."""
    name = f"k{uuid.uuid4().hex[:8]}"
    args = ["search", "--space", "cells", "--strategy", "random", "--trials", "6", "--storage", postgres_url,
            "--study-name", name, *set_args([*tiny_overrides, *CELLS])]  # fmt: skip
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")

    def start(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "selfnas.cli", *extra], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip

    survivor = start(*args, "--quiet", "--out", str(tmp_path / "m0"))
    victim = start(*args, "--quiet", "--out", str(tmp_path / "m1"))
    storage = optuna.storages.RDBStorage(postgres_url)  # one connection pool for the polling
    deadline = time.monotonic() + 300
    while not (_owned_running(storage, name, survivor.pid) and _owned_running(storage, name, victim.pid)):
        assert survivor.poll() is None and victim.poll() is None, "a process ended before both ran a trial"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)  # mid-trial: it owns a RUNNING trial
    victim.wait()
    out, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err[-2000:]
    trials = _trials(postgres_url, name)
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.WAITING not in states
    assert len(budget_trials(trials)) == 6  # the killed trial was retried, and counted once
    assert sorted(t.number for t in trials) == list(range(len(trials)))

    resumed = start("search", "--resume", "--out", str(tmp_path / "m1"))
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    assert "finished" in (out + err).lower()
    after = _trials(postgres_url, name)
    assert [(t.number, t.state, t.datetime_complete) for t in after] == [
        (t.number, t.state, t.datetime_complete) for t in trials
    ]  # nothing failed, enqueued or run


def test_a_retry_left_waiting_after_the_budget_was_spent_is_cancelled_not_run(tmp_path, tiny_overrides):
    """Issue 24 (2), the state the user was left with: the budget full of COMPLETE trials, the
    killed trial FAIL and its retry WAITING. Resuming cancels the retry (it never runs, nothing
    else runs) and leaves no WAITING trial."""
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.trials=2"])
    run = RunDir.prepare(tmp_path / "s")
    study = open_search_study(run, cfg.search, seed=0)
    space = study_space(cfg.search)
    for value in (0.5, 0.25):
        trial = study.ask()
        trial.set_user_attr("genotype", space.suggest(trial).to_json())
        study.tell(trial, value)
    killed = study.ask()
    space.suggest(killed)
    study.tell(killed, state=optuna.trial.TrialState.FAIL)
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.WAITING, params=killed.params,
                                        distributions=killed.distributions,
                                        system_attrs={"failed_trial": killed.number,
                                                      "retry_history": [killed.number]}))  # fmt: skip

    summary = run_search_study(cfg, run, quiet=True)
    trials = optuna.load_study(study_name="selfnas", storage=f"sqlite:///{run.path / 'study.db'}").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL"]
    assert "cancelled" in trials[3].user_attrs and "owner" in trials[3].user_attrs
    assert not (run.path / "trials" / "0003").exists()  # never trained
    assert summary["counted"] == 2 and summary["best_trial"] == 1
