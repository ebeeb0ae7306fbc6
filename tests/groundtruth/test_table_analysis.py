"""The analysis of a ground-truth table on tiny hand-written tables whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from selfnas.errors import SelfnasError
from selfnas.eval.correlation import kendall, spearman
from selfnas.groundtruth.table_analysis import (
    analyse_table,
    batch_kendall,
    batch_spearman,
    correlate,
    epoch_cost,
    jsonable,
    noise_ceiling,
    pick_by_score,
    read_table,
    score_costs,
    score_keys,
    score_quality,
)
from selfnas.io import write_jsonl

LINEAR = [0.61, 0.55, 0.72, 0.68, 0.49, 0.66, 0.58, 0.70]
SECONDS = {"features": 0.5, "ssl_loss": 1.0, "lidar_views": 0.2, "rankme": 0.01, "alignment": 0.02,
           "lidar": 0.03, "naswot": 0.4}  # fmt: skip


def make_row(arch, seed, linear, scores=None, collapsed=False, knn=None, size=None, train=60.0):
    """One table row: ``scores`` maps name -> value (at ``final``) or name -> {fidelity: value}."""
    scores = {k: v if isinstance(v, dict) else {"final": v} for k, v in (scores or {}).items()}
    timed = {f: dict(SECONDS) for f in ("init", "quarter", "epoch1", "final")}
    return {
        "arch": arch, "description": arch, "genotype": None, "seed": seed,
        "params": size if size is not None else 1000.0, "flops": 5000.0,
        "scores": scores,
        "truth": {"linear_val": linear, "knn_val": linear if knn is None else knn,
                  "linear_test": linear, "knn_test": linear},
        "collapsed": collapsed, "score_seconds": timed, "seconds": {"train": train, "truth": 5.0},
    }  # fmt: skip


def entry(entries, score, fidelity="final"):
    return next(e for e in entries if e["score"] == score and e["fidelity"] == fidelity)


def table(**scores_of):
    """Seed-0 rows of 8 architectures; ``scores_of[name](i, linear)`` gives each row's score."""
    return [
        make_row(f"a{i}", 0, y, {name: fn(i, y) for name, fn in scores_of.items()})
        for i, y in enumerate(LINEAR)
    ]


def test_a_score_equal_to_the_target_ranks_perfectly_and_a_negated_lower_is_better_one_too():
    rows = table(rankme=lambda i, y: y, ssl_loss=lambda i, y: -3 * y)  # ssl_loss: direction -1
    entries = score_quality(rows, resamples=100)
    for score in ("rankme", "ssl_loss"):
        e = entry(entries, score)
        assert e["n"] == 8 and e["direction"] == (1.0 if score == "rankme" else -1.0)
        for target in ("linear_val", "knn_val"):
            assert e[target]["spearman"] == pytest.approx(1.0)
            assert e[target]["kendall"] == pytest.approx(1.0)
            assert e[target]["spearman_ci"] == pytest.approx([1.0, 1.0])
        # test accuracy: reported as points only, no intervals
        assert e["linear_test"]["spearman"] == pytest.approx(1.0) and "spearman_ci" not in e["linear_test"]


def test_a_constant_score_gives_nan_not_zero_and_does_not_crash():
    entries = score_quality(table(rankme=lambda i, y: 3.0), resamples=50)
    e = entry(entries, "rankme")
    assert e["n"] == 8
    assert math.isnan(e["linear_val"]["spearman"]) and math.isnan(e["linear_val"]["kendall"])
    assert all(math.isnan(v) for v in e["linear_val"]["spearman_ci"])
    assert jsonable(e)["linear_val"]["spearman"] is None  # strict JSON: null


def test_nan_and_missing_scores_are_skipped_and_n_counts_the_rest():
    rows = table(rankme=lambda i, y: math.nan if i in (1, 4) else y)
    rows[6]["scores"]["rankme"] = {}  # missing at final
    rows[7]["truth"]["knn_val"] = None  # a missing target drops the row for that target only
    e = entry(score_quality(rows, resamples=50), "rankme")
    assert e["n"] == 5
    assert e["linear_val"]["n"] == 5 and e["knn_val"]["n"] == 4
    assert e["linear_val"]["spearman"] == pytest.approx(1.0)


def test_baselines_are_correlated_with_fidelity_dash_and_direction_plus_one():
    rows = [make_row(f"a{i}", 0, y, {"rankme": y}, size=1000 * y) for i, y in enumerate(LINEAR)]
    e = entry(score_quality(rows, resamples=50), "params", "-")
    assert e["direction"] == 1.0 and e["linear_val"]["spearman"] == pytest.approx(1.0)
    flops = entry(score_quality(rows, resamples=50), "flops", "-")
    assert math.isnan(flops["linear_val"]["spearman"])  # every row has 5000 flops: constant


def test_collapsed_rows_are_counted_and_left_out():
    rows = table(rankme=lambda i, y: y)
    # a collapsed architecture whose score says "best" while it is the worst would spoil rho
    rows.append(make_row("bad", 0, 0.10, {"rankme": 99.0}, collapsed=True))
    rows.append(make_row("a0", 1, LINEAR[0], {"rankme": 1.0}, collapsed=True))
    result = analyse_table(rows, resamples=50)
    assert result["collapsed"]["rows"] == 2 and result["collapsed"]["seed0_rows"] == 1
    assert result["collapsed"]["archs"] == ["a0", "bad"]
    assert result["seed0_rows"] == 9 and result["seed0_usable"] == 8
    e = entry(result["scores"], "rankme")
    assert e["n"] == 8 and e["linear_val"]["spearman"] == pytest.approx(1.0)
    assert result["noise_ceiling"]["linear_val"]["n_archs"] == 0  # a0's seed 1 collapsed


def test_the_noise_ceiling_of_identical_seeds_is_one_and_of_shuffled_seeds_is_lower():
    rows = [make_row(f"a{i}", s, y) for s in (0, 1, 2) for i, y in enumerate(LINEAR)]
    rows.append(make_row("single", 0, 0.5))  # one seed: not in the ceiling
    ceiling = noise_ceiling(rows, "linear_val", resamples=100)
    assert ceiling["spearman"] == pytest.approx(1.0) and ceiling["n_archs"] == 8
    assert set(ceiling["pairs"]) == {"0-1", "0-2", "1-2"}
    assert all(p["n"] == 8 for p in ceiling["pairs"].values())
    assert ceiling["interval"] == pytest.approx([1.0, 1.0])
    shuffled = [make_row(f"a{i}", 1, y) for i, y in enumerate(reversed(LINEAR))]
    reversed_ceiling = noise_ceiling(rows[:8] + shuffled, "linear_val", resamples=100)
    assert reversed_ceiling["spearman"] < 0 and list(reversed_ceiling["pairs"]) == ["0-1"]
    assert math.isnan(noise_ceiling(rows[:8], "linear_val")["spearman"])  # no arch with two seeds


def test_the_bootstrap_interval_holds_the_estimate_and_repeats_with_its_seed():
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    y = x + rng.normal(size=30)
    a = correlate(x, y, resamples=500, seed=7)
    b = correlate(x, y, resamples=500, seed=7)
    c = correlate(x, y, resamples=500, seed=8)
    for stat in ("spearman", "kendall"):
        lo, hi = a[f"{stat}_ci"]
        assert -1 <= lo < a[stat] < hi <= 1
        assert a[f"{stat}_ci"] == b[f"{stat}_ci"]
        assert a[f"{stat}_ci"] != c[f"{stat}_ci"]
    assert a["spearman"] == spearman(x, y) and a["kendall"] == kendall(x, y)


def test_the_batched_correlations_equal_the_helpers_on_resamples_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=12).astype(float)  # ties on purpose
    y = x + rng.integers(0, 3, size=12)
    idx = rng.integers(0, 12, size=(40, 12))
    idx[0] = 0  # a constant resample: nan, as the helpers say
    rho, tau = batch_spearman(x[idx], y[idx]), batch_kendall(x[idx], y[idx], chunk_elements=500)
    for i, row in enumerate(idx):
        expected_rho, expected_tau = spearman(x[row], y[row]), kendall(x[row], y[row])
        if math.isnan(expected_rho):
            assert math.isnan(rho[i]) and math.isnan(tau[i])
        else:
            assert rho[i] == pytest.approx(expected_rho, abs=1e-12)
            assert tau[i] == pytest.approx(expected_tau, abs=1e-12)


def test_scores_without_a_direction_are_skipped():
    rows = table(rankme=lambda i, y: y, normalized_std=lambda i, y: y, mystery=lambda i, y: y)
    rows[0]["scores"]["naswot"] = {"init": 1.0}
    keys, skipped = score_keys(rows)
    assert {"normalized_std", "mystery"} <= set(skipped)
    assert keys == [("rankme", "final"), ("naswot", "init"), ("params", "-"), ("flops", "-")]


def test_costs_add_the_shared_pass_once_and_an_epoch_is_train_over_epochs():
    rows = table(
        rankme=lambda i, y: y, ssl_loss=lambda i, y: y, alignment=lambda i, y: y, lidar=lambda i, y: y
    )
    rows[0]["scores"]["naswot"] = {"init": 1.0}
    costs = score_costs(rows)
    assert costs["rankme"]["seconds"] == pytest.approx(0.51)  # rankme + features
    assert costs["ssl_loss"]["seconds"] == pytest.approx(1.0)  # the pass itself, counted once
    assert costs["alignment"]["seconds"] == pytest.approx(1.02)  # alignment + ssl_loss pass
    assert costs["lidar"]["final"] == pytest.approx(0.23)  # lidar + lidar_views
    assert costs["naswot"]["seconds"] == pytest.approx(0.4)  # its own passes only
    cost = epoch_cost(rows, epochs=6)
    assert cost["epoch_seconds"] == pytest.approx(10.0)
    assert cost["epoch_seconds_without_scores"] == pytest.approx((60 - 4 * sum(SECONDS.values())) / 6)
    assert cost["fidelity_training_seconds"] == pytest.approx(
        {"init": 0.0, "quarter": 2.5, "epoch1": 10.0, "final": 60.0}
    )
    with pytest.raises(ValueError):
        epoch_cost(rows, epochs=0)


def test_reading_a_table(tmp_path):
    assert read_table(tmp_path / "absent.jsonl") == []
    write_jsonl(tmp_path / "bad.jsonl", [{"arch": "a", "seed": 0}])
    with pytest.raises(SelfnasError, match="record 1 is not a table row"):
        read_table(tmp_path / "bad.jsonl")


def test_the_default_score_is_the_best_mean_rho_over_the_spaces_with_enough_architectures():
    from selfnas.groundtruth.table_analysis import choose_default_score

    def entry(score, fidelity, rho, test=0.99):
        return {"score": score, "fidelity": fidelity, "linear_val": {"spearman": rho},
                "linear_test": {"spearman": test}}  # fmt: skip

    def space(n, a, b, params, flops):
        scores = [entry("a", "final", a), entry("b", "final", b), entry("params", "-", params),
                  entry("flops", "-", flops)]  # fmt: skip
        return {"seed0_usable": n, "scores": scores}

    spaces = {
        "x": space(40, 0.7, 0.5, 0.2, 0.1),  # a: 0.7 >= 0.6, above both baselines
        "y": space(40, 0.3, 0.65, 0.7, 0.1),  # b: 0.65 but params 0.7 is higher: not a goal space
        "z": space(3, -1.0, 1.0, 0.0, 0.0),  # too few architectures: left out
    }
    out = choose_default_score(spaces, ["a", "b", "c"], ("final",))
    assert out["spaces"] == ["x", "y"] and out["left_out"] == ["z"]
    ranking = out["by_fidelity"]["final"]["ranking"]
    assert [r[0] for r in ranking] == ["b", "a"] and ranking[0][1] == pytest.approx(0.575)
    assert ranking[1][1] == pytest.approx(0.5) and out["by_fidelity"]["final"]["best"] == "b"
    assert out["goal"] == {"b@final": [], "a@final": ["x"]}


def test_the_pick_is_the_best_sign_adjusted_seed0_row_and_never_a_collapsed_or_unscored_one():
    rows = table(ssl_loss=lambda i, y: -y, rankme=lambda i, y: float(i))
    assert pick_by_score(rows, "ssl_loss")["arch"] == "a2"  # lower loss is better: the 0.72 row
    assert pick_by_score(rows, "rankme")["arch"] == "a7"  # higher is better: the last row
    rows[7]["collapsed"] = True
    rows[6]["scores"]["rankme"]["final"] = float("nan")
    rows.append(make_row("a9", 1, 0.9, {"rankme": 99.0}))  # a second seed never picks
    assert pick_by_score(rows, "rankme")["arch"] == "a5"
    with pytest.raises(SelfnasError, match="no usable row has rankme@epoch1"):
        pick_by_score(rows, "rankme", "epoch1")
    with pytest.raises(SelfnasError, match="no direction"):
        pick_by_score(rows, "alpha_req")
