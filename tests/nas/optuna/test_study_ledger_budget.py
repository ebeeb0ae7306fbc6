"""The budget edges of a shared study's ledger: exactly the budget taken, and queued retries."""

import optuna

from selfnas.nas.optuna.study_ledger import Ledger, Snapshot, owner

CHOICE = {"x": optuna.distributions.CategoricalDistribution(["a", "b", "c", "d"])}


def _complete(study: optuna.Study, n: int) -> None:
    for i in range(n):
        params = {"x": "abcd"[i % 4]}
        study.add_trial(optuna.create_trial(params=params, distributions=CHOICE, value=float(i)))


def test_a_trial_after_exactly_the_budget_of_results_does_not_run():
    study = optuna.create_study()
    _complete(study, 3)
    assert Ledger(study, budget=3).may_run(3) is False  # three results before it: the budget is taken
    assert Ledger(study, budget=4).may_run(3) is True  # one slot left: it runs
    assert Ledger(study, budget=3).may_run(2) is True  # two before it: the third slot is its own


def test_running_and_queued_trials_before_it_take_slots_too():
    study = optuna.create_study()
    _complete(study, 1)
    study.ask(CHOICE).set_user_attr("owner", owner())  # trial 1 runs (this live process)
    study.enqueue_trial({"x": "c"})  # trial 2 is queued
    assert Ledger(study, budget=3).may_run(3) is False
    assert Ledger(study, budget=4).may_run(3) is True


def test_a_queued_retry_holds_its_slot_against_new_trials():
    """Results + RUNNING + WAITING < budget is the rule for starting a new trial: a queued retry
    leaves no slot for a new one, so local workers are given shares of the slots that are left."""
    assert Snapshot(budget=4, results=2, running=0, waiting=2).free == 0
    assert Snapshot(budget=5, results=2, running=1, waiting=1).free == 1
    study = optuna.create_study()
    _complete(study, 2)
    study.enqueue_trial({"x": "c"})  # a killed worker's trial, queued again
    now = Ledger(study, budget=3).snapshot()
    assert (now.results, now.waiting, now.free, now.finished) == (2, 1, 0, False)
