"""A shared study never runs a trial twice: a RUNNING trial that this process cannot tell is dead
(its worker is on another machine) is left alone; only heartbeats may fail it."""

import optuna

from selfnas.nas.optuna.study_ledger import Ledger, owner

CHOICE = {"x": optuna.distributions.CategoricalDistribution(["a", "b", "c", "d"])}


def test_a_trial_running_on_another_machine_is_not_failed_or_retried_here():
    study = optuna.create_study()
    trial = study.ask(CHOICE)
    trial.set_user_attr("owner", {**owner(), "host": "another-machine", "pid": 1})
    ledger = Ledger(study, budget=2)
    assert ledger.dead(study.trials) == []
    now = ledger.settle()
    assert (now.results, now.running, now.waiting) == (0, 1, 0)
    assert [t.state.name for t in study.trials] == ["RUNNING"]  # no FAIL, no queued retry


def test_a_live_local_worker_keeps_its_trial():
    study = optuna.create_study()
    study.ask(CHOICE).set_user_attr("owner", owner())  # this process: alive
    ledger = Ledger(study, budget=2)
    assert ledger.settle().running == 1 and [t.state.name for t in study.trials] == ["RUNNING"]
