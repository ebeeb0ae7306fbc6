"""Rank correlations: hand-computed small examples, degenerate inputs and per-study reports."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from selfnas.eval.correlation import kendall, score_correlations, spearman

Correlation = Callable[[list[float] | np.ndarray, list[float] | np.ndarray], float]


def test_hand_computed_without_ties() -> None:
    # ranks differ by d = (0, 1, -1, 0): rho = 1 - 6 * 2 / (4 * 15); one discordant pair of six
    x, y = [1.0, 2.0, 3.0, 4.0], [10.0, 30.0, 20.0, 40.0]
    assert spearman(x, y) == pytest.approx(0.8)
    assert kendall(x, y) == pytest.approx((5 - 1) / 6)


def test_hand_computed_with_ties() -> None:
    # x ranks (1, 2.5, 2.5, 4): Pearson of ranks = 4.5 / sqrt(4.5 * 5); tau-b = 5 / sqrt((6 - 1) * 6)
    x, y = [1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]
    assert spearman(x, y) == pytest.approx(math.sqrt(0.9))
    assert kendall(x, y) == pytest.approx(5 / math.sqrt(30))


@pytest.mark.parametrize("correlation", [spearman, kendall])
def test_monotone_inputs_give_plus_and_minus_one(correlation: Correlation) -> None:
    x = np.linspace(0.0, 1.0, 9)
    assert correlation(x, np.exp(x)) == pytest.approx(1.0)
    assert correlation(x, -(x**3)) == pytest.approx(-1.0)


@pytest.mark.parametrize("correlation", [spearman, kendall])
@pytest.mark.parametrize(
    "x, y", [([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0], [5.0, 5.0]), ([1.0], [2.0]), ([], [])]
)
def test_degenerate_inputs_give_nan_without_warnings(
    correlation: Correlation, x: list[float], y: list[float]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(correlation(x, y))


@pytest.mark.parametrize("correlation", [spearman, kendall])
def test_bad_inputs_raise(correlation: Correlation) -> None:
    with pytest.raises(ValueError, match="equal length"):
        correlation([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        correlation([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        correlation([1.0, 2.0, 3.0], [1.0, float("inf"), 3.0])


def test_score_correlations_skips_missing_and_reports_n() -> None:
    records = [
        {"rankme": 1.0, "uniformity": -1.0, "knn_acc": 0.1, "linear_acc": 0.3},
        {"rankme": 2.0, "uniformity": -2.0, "knn_acc": 0.2},
        {"rankme": 3.0, "uniformity": None, "knn_acc": 0.4, "linear_acc": 0.2},
        {"rankme": 4.0, "uniformity": -3.0, "knn_acc": float("nan"), "linear_acc": 0.1},
        {"knn_acc": 0.9, "linear_acc": 0.9},
    ]
    result = score_correlations(records, ["rankme", "uniformity", "alignment"], ["knn_acc", "linear_acc"])
    assert list(result) == [
        "rankme/knn_acc",
        "rankme/linear_acc",
        "uniformity/knn_acc",
        "uniformity/linear_acc",
    ]
    assert result["rankme/knn_acc"] == {"spearman": pytest.approx(1.0), "kendall": pytest.approx(1.0), "n": 3}
    assert result["rankme/linear_acc"] == {
        "spearman": pytest.approx(-1.0),
        "kendall": pytest.approx(-1.0),
        "n": 3,
    }
    assert result["uniformity/knn_acc"] == {
        "spearman": pytest.approx(-1.0),
        "kendall": pytest.approx(-1.0),
        "n": 2,
    }
    only_one = result["uniformity/linear_acc"]
    assert only_one["n"] == 2 and only_one["spearman"] == pytest.approx(1.0)


def test_score_correlations_with_too_few_records_gives_nan() -> None:
    result = score_correlations([{"rankme": 1.0, "knn_acc": 0.5}, {"rankme": 2.0}], ["rankme"], ["knn_acc"])
    assert result["rankme/knn_acc"]["n"] == 1
    assert math.isnan(result["rankme/knn_acc"]["spearman"]) and math.isnan(
        result["rankme/knn_acc"]["kendall"]
    )
    assert score_correlations([], ["rankme"], ["knn_acc"]) == {}


def test_score_correlations_rejects_non_numeric_values() -> None:
    with pytest.raises(ValueError, match="'knn_acc' must be a real number"):
        score_correlations([{"rankme": 1.0, "knn_acc": "0.5"}], ["rankme"], ["knn_acc"])
