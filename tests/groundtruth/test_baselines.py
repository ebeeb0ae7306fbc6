"""The baselines every search result is read against (selfnas.groundtruth.baselines)."""

from __future__ import annotations

import itertools
import math

import pytest

from selfnas.errors import SelfnasError
from selfnas.groundtruth.baselines import (
    against_random,
    equal_compute_trainings,
    equal_width_default,
    in_top,
    percentile,
    random_search_expectation,
    relative_improvement,
    search_epochs,
)
from selfnas.models.backbones import create_backbone

TRUTH = [0.70, 0.74, 0.71, 0.78, 0.69, 0.75]
SCORE = [0.3, 0.9, 0.1, 0.5, 0.8, 0.2]


def brute_force(truth: list[float], score: list[float], k: int) -> float:
    """Mean over every k-subset of the truth of its best-by-score member."""
    picks = [truth[max(sub, key=lambda i: score[i])] for sub in itertools.combinations(range(len(truth)), k)]
    return sum(picks) / len(picks)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_random_search_is_exact_over_every_draw(k: int) -> None:
    assert random_search_expectation(TRUTH, SCORE, k) == pytest.approx(brute_force(TRUTH, SCORE, k))


def test_a_fractional_budget_trains_that_many_on_average() -> None:
    # 2.25 trainings: two with probability 0.75, three with 0.25 (mean exactly 2.25)
    want = 0.75 * brute_force(TRUTH, SCORE, 2) + 0.25 * brute_force(TRUTH, SCORE, 3)
    assert random_search_expectation(TRUTH, SCORE, 2.25) == pytest.approx(want)
    assert random_search_expectation(TRUTH, SCORE, 60) == pytest.approx(TRUTH[1])  # all: the best score
    with pytest.raises(SelfnasError):
        random_search_expectation(TRUTH, SCORE, 0.5)


def test_an_unscored_row_is_never_the_pick() -> None:
    score = [math.nan, 0.1, 0.2]
    assert random_search_expectation([0.9, 0.5, 0.6], score, 3) == pytest.approx(0.6)


def test_equal_compute_counts_pruned_epochs_and_not_skipped_trials() -> None:
    trials = [
        {"state": "COMPLETE", "intermediate": {"1": -0.1, "2": -0.2, "3": -0.3, "4": -0.4}},
        {"state": "PRUNED", "intermediate": {"1": -0.05}},  # stopped after one epoch
        {"state": "PRUNED", "intermediate": {}, "over_cap": True, "cancelled": "over the cap"},
        {"state": "FAIL", "intermediate": {}, "cancelled": "budget taken"},
        {"state": "FAIL", "intermediate": {"1": 0.0, "2": 0.0}},  # collapsed after two epochs
        {"number": 7, "state": "FAIL", "intermediate": {"1": -0.1, "2": -0.2, "3": -0.3}},  # worker died
        {"number": 8, "state": "PRUNED", "intermediate": {"1": -0.1, "2": -0.2}, "retry_of": 7},
    ]
    spent = search_epochs(trials, trial_epochs=4)
    assert spent == 4 + 1 + 2 + 2  # the retry is charged, the crashed run it replaced is not
    # a random search given these epochs (plus three epochs of screening) trains exactly 3 rows' worth
    assert equal_compute_trainings(spent + 3, 4) == 3.0
    with pytest.raises(SelfnasError):
        equal_compute_trainings(1, 0)


def test_percentile_and_relative_improvement_on_a_known_table() -> None:
    population = [0.60, 0.70, 0.80, 0.90]
    assert percentile(0.80, population) == pytest.approx(62.5)  # two below, one tie counted half
    assert percentile(0.95, population) == 100.0
    assert relative_improvement(0.80, 0.75) == pytest.approx(100 * 0.05 / 0.75)
    summary = against_random(0.80, population)
    assert summary["random_median"] == pytest.approx(0.75)
    assert summary["ri"] == pytest.approx(100 * 0.05 / 0.75)
    assert in_top(0.90, population, 0.10) and not in_top(0.85, population, 0.10)
    assert in_top(0.80, population, 0.50) and not in_top(0.79, population, 0.50)


@pytest.mark.parametrize("out_dim", [64, 128])
def test_the_default_is_widened_to_the_finds_feature_width(out_dim: int) -> None:
    cells = create_backbone("darts_cells", in_channels=1, genotype=_cells_genotype(), width=out_dim // 16,
                            layers=5)  # fmt: skip
    update = equal_width_default(cells.out_dim)
    default = create_backbone(update["backbone"], in_channels=1, **update["backbone_kwargs"])
    assert default.out_dim == cells.out_dim == out_dim
    with pytest.raises(SelfnasError):
        equal_width_default(102)  # not width * 4 for any width


def _cells_genotype() -> dict:
    edges = [["sep_conv_3x3", 0], ["skip_connect", 1]] * 4  # each node: inputs 0 and 1
    return {"format": "selfnas-genotype", "version": 1, "space": "cells", "nodes": 4,
            "normal": edges, "reduce": edges}  # fmt: skip
