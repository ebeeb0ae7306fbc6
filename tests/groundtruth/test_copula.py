"""The copula a simulation draws fresh architectures from: fitted on tables whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from selfnas.errors import SelfnasError
from selfnas.groundtruth.baselines import in_top
from selfnas.groundtruth.copula import cross_seed_attenuation, draw_space, fit_copula, normal_scores
from selfnas.groundtruth.simulate import load_table, pick_by_score, screen_search

SCORE = "view_retrieval"  # higher is better
FIDS = ("init", "epoch1", "final")


def row(arch: str, seed: int, val: float, scores: dict[str, float]) -> dict:
    return {
        "arch": arch,
        "seed": seed,
        "genotype": {"arch": arch},
        "scores": {SCORE: {f: scores[f] for f in FIDS}},
        "truth": {"linear_val": val, "linear_test": val - 0.01},
    }


def gaussian_table(n: int, rho: float, seed: int = 0) -> list[dict]:
    """n architectures whose every score fidelity has correlation ``rho`` with linear_val."""
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(n)
    rows = []
    for i in range(n):
        noise = rng.standard_normal()
        s = rho * truth[i] + math.sqrt(1 - rho**2) * noise
        rows.append(row(f"a{i}", 0, 0.7 + 0.02 * truth[i], dict.fromkeys(FIDS, float(s))))
    return rows


def test_normal_scores_keep_the_order_and_are_symmetric() -> None:
    z = normal_scores(np.array([3.0, 1.0, 2.0]))
    assert z[1] < z[2] < z[0]
    assert z[0] == pytest.approx(-z[1])


def test_fit_recovers_the_correlation_and_draws_keep_the_truth_range() -> None:
    table = load_table(gaussian_table(400, 0.8), epochs=4)
    cop = fit_copula(table, SCORE)
    j = cop.columns.index("linear_val")
    assert cop.corr[0, j] == pytest.approx(0.8, abs=0.06)
    assert np.allclose(np.diag(cop.corr), 1.0)
    space = draw_space(cop, 2000, np.random.default_rng(1))
    assert space.n == 2000
    assert table.val.min() <= space.val.min() and space.val.max() <= table.val.max()
    assert np.median(space.val) == pytest.approx(np.median(table.val), abs=0.004)


@pytest.mark.parametrize(("rho", "low", "high"), [(0.999, 0.97, 1.0), (0.0, 0.02, 0.22)])
def test_a_screened_search_on_drawn_spaces_is_as_good_as_the_score(
    rho: float, low: float, high: float
) -> None:
    """A perfect score always screens into the table's top 10%; a useless one lands there at chance."""
    table = load_table(gaussian_table(200, rho), epochs=4)
    cop = fit_copula(table, SCORE)
    hits = []
    for r in range(60):
        rng = np.random.default_rng(r)
        space = draw_space(cop, 400, rng)
        trace = screen_search(space, 99, rng, screen=40, keep=2, score=SCORE, eta=2, cost=0.03)
        pick = pick_by_score(space, trace, 1e9, SCORE)
        hits.append(in_top(space.val[pick], table.val))
    assert low <= np.mean(hits) <= high


def test_attenuation_is_one_without_seed_noise_and_zero_when_only_seed_noise_correlates() -> None:
    rng = np.random.default_rng(0)
    shared, noise_only = [], []
    for a in range(40):
        quality = rng.standard_normal()
        for seed in range(3):
            luck = rng.standard_normal()
            val = 0.7 + 0.01 * quality + 0.01 * luck
            # the score sees the architecture only / the training's luck only
            shared.append(row(f"a{a}", seed, val, dict.fromkeys(FIDS, quality)))
            noise_only.append(row(f"a{a}", seed, val, dict.fromkeys(FIDS, luck)))
    assert cross_seed_attenuation(shared, SCORE, FIDS)["final"] == pytest.approx(1.0, abs=0.15)
    assert cross_seed_attenuation(noise_only, SCORE, FIDS)["final"] == pytest.approx(0.0, abs=0.15)


def test_attenuation_lowers_the_fitted_correlation_with_the_truth() -> None:
    table = load_table(gaussian_table(200, 0.8), epochs=4)
    plain = fit_copula(table, SCORE)
    half = fit_copula(table, SCORE, attenuation={"final": 0.5})
    j, k = FIDS.index("final"), plain.columns.index("linear_val")
    assert half.corr[j, k] < plain.corr[j, k] - 0.2
    assert half.corr[0, k] == pytest.approx(plain.corr[0, k], abs=0.05)
    assert np.all(np.linalg.eigvalsh(half.corr) > 0)


def test_bad_input_is_refused_with_a_reason() -> None:
    table = load_table(gaussian_table(5, 0.5), epochs=4)
    with pytest.raises(SelfnasError, match="at least 10 rows"):
        fit_copula(table, SCORE)
    with pytest.raises(SelfnasError, match="several seeds"):
        cross_seed_attenuation(gaussian_table(20, 0.5), SCORE, FIDS)
