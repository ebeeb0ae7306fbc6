"""Screening at initialisation (selfnas.nas.optuna.screening): what it measures, what it
enqueues, and that a killed screening continues where it stopped."""

from __future__ import annotations

import math

import optuna
import pytest

from selfnas.api import search
from selfnas.config import build_config
from selfnas.errors import ConfigError
from selfnas.io import read_jsonl, write_jsonl
from selfnas.nas.optuna import screening
from selfnas.nas.optuna.optuna_search import trial_config
from selfnas.nas.scoring import embedding_scores
from selfnas.nas.spaces.optuna_spaces import study_space
from selfnas.rundir import RunDir
from selfnas.training.builder import load_config_data
from selfnas.training.trainer import Trainer, stream_seed

CELLS = ["search.space=cells", "search.strategy=tpe", "search.nodes=2", "search.cell_width=4",
         "search.cell_layers=3", "search.trial_epochs=1", "search.pruner=none",
         "search.label_eval=false"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_screening_score_is_the_trials_score_at_initialisation(tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS])
    data = load_config_data(cfg)
    space = study_space(cfg.search)
    update = space.model_update(space.suggest(optuna.create_study().ask()))
    config = trial_config(cfg, update)
    fast = screening.score_at_init(config, data, "view_retrieval")
    trainer = Trainer(config, RunDir("unused"), quiet=True, data=data)  # the weights the trial starts from
    images = data.val.images[: screening.SCORE_IMAGES]
    full = embedding_scores(trainer.model, trainer.augment, images, stream_seed(config.run.seed, 9, 0),
                            calibration=trainer.images[: screening.CALIBRATION_IMAGES])  # fmt: skip
    assert math.isfinite(fast) and fast == pytest.approx(full["view_retrieval"], abs=1e-9)


def test_the_best_screened_become_the_first_trials_and_a_killed_screening_continues(tmp_path, tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.trials=2", "search.screen=4",
                                  "search.screen_keep=2"])  # fmt: skip
    result = search(cfg, out=tmp_path / "s", quiet=True)
    rows = read_jsonl(tmp_path / "s" / "screen.jsonl")
    assert [r["index"] for r in rows] == [0, 1, 2, 3] and result["screen"]["candidates"] == 4
    best = sorted((r for r in rows if r["score"] is not None), key=lambda r: -r["score"])[:2]
    trials = read_jsonl(tmp_path / "s" / "trials.jsonl")
    assert [t["params"] for t in trials] == [r["params"] for r in best]  # best first
    assert [t["screen_score"] for t in trials] == [r["score"] for r in best]

    # killed after two candidates: the same draws, the first two not measured again
    again = tmp_path / "again"
    again.mkdir()
    kept = [{**r, "seconds": -1.0} for r in rows[:2]]
    write_jsonl(again / "screen.jsonl", kept)
    space = study_space(cfg.search)
    data = load_config_data(cfg)
    resumed = screening.screen_candidates(cfg, RunDir(again), space, data, lambda u: trial_config(cfg, u))
    assert resumed[:2] == kept and [r["params"] for r in resumed] == [r["params"] for r in rows]
    assert [r["score"] for r in resumed[2:]] == [r["score"] for r in rows[2:]]


def test_screening_needs_an_embedding_score(tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.screen=4", "search.score=params"])
    with pytest.raises(ConfigError, match="search.screen"):
        screening.check_screenable(cfg)
