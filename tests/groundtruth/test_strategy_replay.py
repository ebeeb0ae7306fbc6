"""Strategies replayed on a folder of tables (what benchmarks/strategies_sim.py writes and prints)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfnas.config import SearchConfig
from selfnas.groundtruth import strategy_replay
from selfnas.groundtruth.strategy_replay import Replay, replay_folder, replot, search_default
from selfnas.nas.optuna import optuna_search

from .test_simulate import NINE, table


def test_the_simulated_default_search_is_the_search_default() -> None:
    search = SearchConfig()
    sampler = optuna_search._sampler(search.model_copy(update={"strategy": "tpe"}), seed=0)
    pruner = optuna_search._pruner(search)
    options = search_default("ssl_loss")
    assert options == {"score": "ssl_loss", "startup": sampler._n_startup_trials,
                       "multivariate": sampler._multivariate, "eta": pruner._reduction_factor}  # fmt: skip
    assert search.pruner == "halving" and search.min_epochs == 1  # the simulation's one rung at epoch 1


def test_replot_redraws_the_figures_from_the_json_without_simulating(tmp_path: Path, monkeypatch) -> None:
    table(tmp_path, NINE)  # writes tmp_path/heads.jsonl
    out, figures = tmp_path / "sim.json", tmp_path / "figs"
    settings = Replay(repeats=5, trials=6, search_scores=("rankme",), tune=((2, True, 2),))
    first = replay_folder(tmp_path, settings, out, figures)
    figure = figures / "strategies_heads.png"
    assert figure.exists() and "tune[rankme,startup=2,mv=1,eta=2]" in first["heads"]
    figure.unlink()
    monkeypatch.setattr(strategy_replay, "run_space", lambda *a, **k: pytest.fail("replot simulated"))
    assert replot(out, figures) == json.loads(json.dumps(first))
    assert figure.exists()
