"""Shared Optuna studies: PostgreSQL with several workers and processes, dead trials retried."""

import os
import subprocess
import sys
import uuid

import optuna
import pytest

from selfnas.api import search
from selfnas.config import build_config
from selfnas.io import read_jsonl
from selfnas.nas.spaces.optuna_spaces import study_space
from selfnas.nas.strategies.optuna_search import open_search_study, run_search_study
from selfnas.rundir import RunDir
from tests.conftest import REPO, set_args

CELLS = ["search.space=cells", "search.nodes=2", "search.cell_width=4", "search.cell_layers=3",
         "search.trial_epochs=1", "search.pruner=none", "search.label_eval=false"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("single_thread")


def _trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
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
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen([sys.executable, "-m", "selfnas.cli", *args, "--out", str(tmp_path / f"m{i}")],
                         cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
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
