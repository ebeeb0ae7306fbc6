"""A shared study survives a short database outage; a long one ends the worker with one line and
loses no trial (issue 24). Real PostgreSQL on loopback, restarted mid-trial."""

import os
import subprocess
import sys
import time
import uuid

import optuna
import pytest

from selfnas.nas.optuna import study_storage
from selfnas.nas.optuna.study_ledger import owner
from selfnas.nas.optuna.study_storage import StudyStorageError, open_storage
from tests.conftest import REPO, set_args
from tests.nas.optuna.test_study_storage import CELLS
from tests.pg import _free_port

pytestmark = pytest.mark.usefixtures("single_thread")
RUNNING = optuna.trial.TrialState.RUNNING


def test_a_worker_rides_out_a_database_restart_mid_trial(
    tmp_path, tiny_overrides, postgres_server, postgres_url
):
    name = f"o{uuid.uuid4().hex[:8]}"
    args = ["search", "--space", "cells", "--strategy", "random", "--trials", "3", "--storage", postgres_url,
            "--study-name", name, "--quiet", "--out", str(tmp_path / "s"),
            *set_args([*tiny_overrides, *CELLS, "search.trial_epochs=3"])]  # fmt: skip
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    worker = subprocess.Popen([sys.executable, "-m", "selfnas.cli", *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    storage = optuna.storages.RDBStorage(postgres_url)
    deadline = time.monotonic() + 300
    while True:  # wait until the worker is inside its first trial
        assert worker.poll() is None and time.monotonic() < deadline, (
            worker.stderr.read() if worker.poll() else ""
        )
        try:
            trials = optuna.load_study(study_name=name, storage=storage).trials
        except KeyError:
            trials = []
        if any(t.state == RUNNING and "owner" in t.user_attrs for t in trials):
            break
        time.sleep(0.05)
    storage.engine.dispose()
    down = postgres_server.restart(down_s=3.0)  # every connection drops; refused for 3 s
    out, err = worker.communicate(timeout=600)
    assert worker.returncode == 0, err[-3000:]
    assert "lost the study database" in err and "the study database is back after" in err
    trials = optuna.load_study(study_name=name, storage=postgres_url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3, (down, err[-2000:])


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_longer_outage_ends_the_worker_with_one_line_and_keeps_its_trial(
    postgres_server, postgres_url, monkeypatch
):
    monkeypatch.setattr(study_storage, "OUTAGE_S", 2.0)
    storage = open_storage(postgres_url)
    study = optuna.create_study(study_name=f"g{uuid.uuid4().hex[:8]}", storage=storage)
    trial = study.ask()
    trial.set_user_attr("owner", owner())
    postgres_server.stop()
    try:
        t0 = time.monotonic()
        with pytest.raises(StudyStorageError) as caught:
            trial.report(0.5, 1)
        waited = time.monotonic() - t0
        with pytest.raises(StudyStorageError):  # after giving up, at once: no second wait
            study.get_trials()
        assert time.monotonic() - t0 - waited < 0.5
    finally:
        postgres_server.start()
    assert 2.0 <= waited < 10.0
    message = str(caught.value)
    assert "\n" not in message and "unreachable for 2 s" in message and "retried" in message
    kept = optuna.load_study(study_name=study.study_name, storage=postgres_url).trials
    assert [t.state for t in kept] == [RUNNING]  # not lost: RUNNING under its owner, to be retried


def test_an_unreachable_server_is_named_as_the_cause(postgres_server):
    from selfnas.errors import ConfigError

    closed = f"postgresql://selfnas@127.0.0.1:{_free_port()}/studies"
    with pytest.raises(
        ConfigError, match=r"no database server answers at 127\.0\.0\.1:\d+ \(connection refused\)"
    ):
        open_storage(closed)
    missing = postgres_server.url("nosuchdb")
    with pytest.raises(ConfigError, match=r"has no database 'nosuchdb'; create it \(createdb nosuchdb\)"):
        open_storage(missing)
