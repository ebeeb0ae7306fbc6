"""CSNAS-style cell search with Optuna: samplers, pruning, SQLite study, resume."""

import json
import logging
import math
import re
import sys
from types import SimpleNamespace

import optuna
import pytest

from selfnas.api import search
from selfnas.config import build_config
from selfnas.errors import ConfigError
from selfnas.io import read_jsonl
from selfnas.models.genotype import load_genotype
from selfnas.nas.optuna.optuna_search import suggest_cells
from selfnas.nas.optuna.study_ledger import Ledger
from selfnas.nas.optuna.trial_scores import TrialTrainer
from selfnas.nas.spaces.cells import CellSearchSpace

CELLS = ["search.space=cells", "search.nodes=2", "search.cell_width=4", "search.cell_layers=3",
         "search.trial_epochs=2"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_sampled_space_is_the_enumerated_space():
    space = CellSearchSpace(nodes=3, C=4, layers=3)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    genotype = suggest_cells(trial, space)
    dists = trial.distributions
    for k in range(space.nodes):  # inputs x op0 x op1 per node == the enumerated choices of that node
        n = (len(dists[f"normal.node{k}.inputs"].choices) * len(dists[f"normal.node{k}.op0"].choices)
             * len(dists[f"normal.node{k}.op1"].choices))  # fmt: skip
        assert n == len(space.enumerate_node_choices(k))
    assert genotype.nodes == 3 and len(genotype.normal) == 6


@pytest.mark.parametrize("strategy", ["tpe", "random", "evolution"])
def test_each_strategy_runs_a_study_and_writes_the_best_genotype(tmp_path, tiny_overrides, strategy):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, f"search.strategy={strategy}", "search.trials=3",
                                  "search.pruner=none"])  # fmt: skip
    result = search(cfg, out=tmp_path / "s", quiet=True)
    assert result["trials"]["COMPLETE"] == 3
    genotype = load_genotype(tmp_path / "s" / "genotype.json")
    assert genotype.space == "cells"
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    best = min((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["value"])
    assert best["number"] == result["best_trial"] and all(math.isfinite(r["value"]) for r in rows)
    assert (tmp_path / "s" / "study.db").exists()
    trial_runs = sorted((tmp_path / "s" / "trials").iterdir())  # each trial's run, its metrics, no plots:
    assert len(trial_runs) == 3 and all((t / "metrics.jsonl").exists() for t in trial_runs)
    assert not list((tmp_path / "s" / "trials").glob("*/plots/*"))  # plotting cost more than training


def test_a_resumed_study_keeps_its_trials_and_adds_the_rest(tmp_path, tiny_overrides):
    base = [*tiny_overrides, *CELLS, "search.strategy=tpe", "search.pruner=none"]
    search(build_config(overrides=[*base, "search.trials=2"]), out=tmp_path / "s", quiet=True)
    first = read_jsonl(tmp_path / "s" / "trials.jsonl")
    result = search(None, out=tmp_path / "s", resume=True, quiet=True, overrides=["search.trials=4"])
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    assert result["trials"]["COMPLETE"] == 4 and len(rows) == 4
    assert [r["params"] for r in rows[:2]] == [r["params"] for r in first]
    assert len({json.dumps(r["params"], sort_keys=True) for r in rows}) == 4


def test_pruning_stops_poor_trials(tmp_path, tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.trials=6",
                                  "search.pruner=halving", "search.trial_epochs=3"])  # fmt: skip
    result = search(cfg, out=tmp_path / "s", quiet=True)
    assert result["trials"]["COMPLETE"] + result["trials"]["PRUNED"] == 6
    assert result["trials"]["PRUNED"] >= 1


def test_the_pruner_rungs_come_from_the_config(tiny_overrides):
    from selfnas.nas.optuna.optuna_search import _pruner

    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.pruner=halving",
                                  "search.reduction_factor=3", "search.min_epochs=2"])  # fmt: skip
    pruner = _pruner(cfg.search)
    assert pruner._reduction_factor == 3 and pruner._min_resource == 2
    with pytest.raises(ConfigError, match="reduction_factor"):
        build_config(overrides=[*tiny_overrides, *CELLS, "search.reduction_factor=1"])


def test_bad_storage_and_space_are_one_line_errors(tmp_path, tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=tpe",
                                  "search.storage=postgresql://nobody@127.0.0.1:1/none"])  # fmt: skip
    with pytest.raises(ConfigError, match="cannot open study storage"):
        search(cfg, out=tmp_path / "s", quiet=True)
    heads = build_config(overrides=[*tiny_overrides, "search.strategy=tpe"])
    with pytest.raises(ConfigError, match="--space cells"):
        search(heads, out=tmp_path / "h", quiet=True)


def test_two_local_workers_share_a_journal_study_exactly(tmp_path, tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=tpe", "search.trials=4",
                                  "search.pruner=none", "search.n_workers=2",
                                  f"search.storage=journal:{tmp_path / 'study.log'}"])  # fmt: skip
    result = search(cfg, out=tmp_path / "s", quiet=True)
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    assert result["trials"]["COMPLETE"] == 4 and sorted(r["number"] for r in rows) == [0, 1, 2, 3]
    assert len({json.dumps(r["params"], sort_keys=True) for r in rows}) == 4  # no duplicated candidate


def test_several_workers_on_sqlite_are_refused_before_anything_is_written(tmp_path, tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=tpe", "search.n_workers=2"])
    with pytest.raises(ConfigError, match="journal:FILE"):
        search(cfg, out=tmp_path / "s", quiet=True)
    assert not (tmp_path / "s").exists()


def test_a_collapsed_candidate_fails_and_never_wins_even_with_the_lowest_loss(tmp_path, tiny_overrides,
                                                                              monkeypatch):  # fmt: skip
    real = TrialTrainer.embedding_scores

    def collapse_trial_1(self):  # every input of trial 1 maps to one point: SimSiam's trivial minimum
        scores = real(self)
        if self.trial.number == 1:
            scores.update(ssl_loss=-1.0, normalized_std=0.0, collapsed=1.0)
        return scores

    monkeypatch.setattr(TrialTrainer, "embedding_scores", collapse_trial_1)
    base = [*tiny_overrides, *CELLS, "search.strategy=random", "search.pruner=halving",
            "search.trial_epochs=1", "search.label_eval=false", "search.score=ssl_loss"]  # fmt: skip
    result = search(build_config(overrides=[*base, "search.trials=3"]), out=tmp_path / "s", quiet=True)
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    collapsed = rows[1]
    assert collapsed["state"] == "FAIL" and collapsed["value"] is None  # not PRUNED, not COMPLETE
    assert collapsed["fail_reason"].startswith("collapsed: every input maps to one point")
    assert collapsed["scores"]["ssl_loss"] < min(r["scores"]["ssl_loss"] for r in rows if r is not collapsed)
    assert result["trials"]["FAIL"] == 1 and result["trials"]["COMPLETE"] >= 1  # the pruner may stop trial 2
    assert result["best_trial"] != 1 and rows[result["best_trial"]]["state"] == "COMPLETE"
    assert result["best_value"] == min(r["value"] for r in rows if r["state"] == "COMPLETE")
    # a collapsed trial is a result, not a dead worker: never re-enqueued, counted once in the budget
    study = optuna.load_study(study_name="selfnas", storage=f"sqlite:///{tmp_path / 's' / 'study.db'}")
    assert (
        Ledger(study, 3, exclusive=True).settle().waiting == 0 and len(study.trials) == 3
    )  # nothing enqueued
    search(None, out=tmp_path / "s", resume=True, quiet=True, overrides=["search.trials=4"])
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    assert len(rows) == 4 and [r["retry_of"] for r in rows] == [None] * 4
    assert rows[1]["state"] == "FAIL" and rows[1]["params"] != rows[3]["params"]


def test_only_a_collapse_to_one_point_or_non_finite_features_rejects_a_candidate():
    trainer = SimpleNamespace(model=SimpleNamespace(backbone=SimpleNamespace(out_dim=16)))

    def rejection(**scores):
        return TrialTrainer.rejection(trainer, {"collapsed": 1.0, **scores})

    assert rejection(normalized_std=0.0).startswith("collapsed: every input maps to one point")
    assert rejection(normalized_std=1e-5).startswith("collapsed")  # 4e-5 x the healthy 1/sqrt(16)
    assert rejection(normalized_std=math.nan) == "collapsed: the features are not finite"
    assert rejection(normalized_std=0.01) is None  # flagged (0.04 x healthy) but still spread: recorded
    assert TrialTrainer.rejection(trainer, {"collapsed": 0.0, "normalized_std": 0.0}) is None


def test_a_study_shows_one_short_line_per_trial_and_logs_the_parameters(
    tmp_path, tiny_overrides, capfd, monkeypatch
):
    """Issue 23: per finished trial one console line (counter, score, best so far, ETA); Optuna's
    own messages and the parameter dumps only in the run's study.log; a resumed study says so
    once; a finished one is reported and left as it is."""
    for handler in logging.getLogger("optuna").handlers:  # Optuna's console handler kept the stderr of
        if type(handler) is logging.StreamHandler:  # its import: make it write where we look
            monkeypatch.setattr(handler, "stream", sys.stderr)
    base = [*tiny_overrides, *CELLS, "search.strategy=random", "search.pruner=none",
            "search.label_eval=false", "search.trial_epochs=1", "search.score=ssl_loss"]  # fmt: skip
    result = search(build_config(overrides=[*base, "search.trials=2"]), out=tmp_path / "s", quiet=True)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("trial ")]
    assert len(lines) == 2, err
    assert re.fullmatch(r"trial 0 +1/2  ssl_loss -?[\d.e-]+  best -?[\d.e-]+ \(trial 0\)  eta \S+", lines[0])
    assert lines[1].startswith("trial 1   2/2  ssl_loss ") and lines[1].endswith("eta 0s")
    assert f"best {result['best_score']:.4g} (trial {result['best_trial']})" in lines[1]
    for optuna_says in ("A new study created", "Trial 0 finished", "parameters", "Using an existing study"):
        assert optuna_says not in err
    log = (tmp_path / "s" / "study.log").read_text()
    assert "A new study created" in log and "Trial 1 finished with value" in log and "normal.node0.op0" in log
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    assert result["best_score"] == min(r["scores"]["ssl_loss"] for r in rows)  # the loss as measured
    assert result["study_name"] == "selfnas"
    assert result["storage"] == f"sqlite:///{(tmp_path / 's' / 'study.db').resolve()}"

    search(None, out=tmp_path / "s", resume=True, quiet=True, overrides=["search.trials=3"])
    err = capfd.readouterr().err
    assert (
        err.count("study selfnas: 2/3 trials done, best ssl_loss") == 1
        and "Using an existing study" not in err
    )
    assert [line[:13] for line in err.splitlines() if line.startswith("trial ")] == ["trial 2   3/3"]

    files = {
        p: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir() if p.is_file() and p.suffix != ".log"
    }
    assert (tmp_path / "s" / "status.json") in files  # the run's status too: a finished study is left alone
    search(None, out=tmp_path / "s", resume=True, quiet=True, overrides=["search.trials=3"])
    err = capfd.readouterr().err
    assert "study selfnas is finished: 3/3 trials, best ssl_loss" in err and "nothing to run" in err
    assert not [line for line in err.splitlines() if line.startswith("trial ")]
    assert {p: p.stat().st_mtime_ns for p in files} == files  # trials.jsonl, study.json, genotype, study.db
