"""Simulated search studies on tiny hand-written tables whose answers are known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from selfnas.errors import SelfnasError
from selfnas.groundtruth.simulate import (
    NONE,
    STRATEGIES,
    SimTable,
    flatten,
    halving_search,
    load_table,
    random_search,
    regret_curve,
    screen_search,
    simulate,
    tpe_search,
)
from selfnas.io import write_jsonl

OPS = ("identity", "linear_bn_relu", "max_pool_3")
SEARCHES = ("random", "tpe", "evolution")  # one full training per trial


def head(ops: tuple[str, ...]) -> dict:
    return {
        "format": "selfnas-genotype", "version": 1, "space": "heads", "method": "simsiam",
        "projector": {"layers": [{"op": op, "dim": 64} for op in ops]}, "predictor": None,
    }  # fmt: skip


def row(arch: str, linear: float, genotype: dict | None, seed: int = 0, collapsed: bool = False) -> dict:
    """A table row whose rankme is linear_val at every fidelity and ssl_loss its negative."""
    scores = {f: linear for f in ("init", "quarter", "epoch1", "final")}
    return {
        "arch": arch, "description": arch, "genotype": genotype, "seed": seed, "params": 1.0, "flops": 1.0,
        "scores": {"rankme": scores, "ssl_loss": {f: -v for f, v in scores.items()}},
        "truth": {"linear_val": linear, "linear_test": linear - 0.01, "knn_val": linear, "knn_test": linear},
        "collapsed": collapsed,
    }  # fmt: skip


def table(tmp_path: Path, linear: list[float], extra: list[dict] | None = None, **kw) -> SimTable:
    """A heads table of len(linear) architectures (two searched layers), written and read back."""
    genotypes = [head((OPS[i % 3], OPS[(i // 3) % 3])) for i in range(len(linear))]
    rows = [row(f"a{i}", v, g) for i, (v, g) in enumerate(zip(linear, genotypes, strict=True))]
    path = tmp_path / "heads.jsonl"
    write_jsonl(path, rows + (extra or []))
    return load_table(path, **kw)


FOUR = [0.60, 0.72, 0.55, 0.68]
NINE = [0.61, 0.55, 0.72, 0.68, 0.49, 0.66, 0.58, 0.70, 0.64]


def test_the_lookup_keeps_seed0_usable_rows_and_varying_parameters(tmp_path: Path) -> None:
    extra = [row("a1", 0.99, None, seed=1), row("bad", 0.99, head(("identity", "identity")), collapsed=True)]
    t = table(tmp_path, FOUR, extra + [row("default", 0.5, None)])
    assert t.archs == ("a0", "a1", "a2", "a3", "default")
    assert t.best == 0.72 and t.top_k == 1 and t.threshold == 0.72  # < 20 archs: top 5% is the best
    # keys sorted (JSON Lines): the null predictor splits off default alone, as every dim does: kept once
    assert t.names == ("predictor", "projector.layers.0.op", "projector.layers.1.op")
    assert t.choices[0] == (NONE, "null") and t.choices[2] == ('"identity"', '"linear_bn_relu"', NONE)
    assert t.codes[:, 0].tolist() == [1, 1, 1, 1, 0] and t.test[1] == pytest.approx(0.71)
    assert flatten({"space": "cells", "normal": [["skip", 0]], "nodes": 4}) == {
        "normal.0.0": '"skip"', "normal.0.1": "0", "nodes": "4"
    }  # fmt: skip
    with pytest.raises(SelfnasError, match="no usable"):
        load_table([row("x", 0.5, None, collapsed=True)])


def test_random_without_replacement_reaches_zero_regret_by_the_table_size(tmp_path: Path) -> None:
    t = table(tmp_path, FOUR)
    for seed in range(50):
        trace = random_search(t, 10, np.random.default_rng(seed))
        assert sorted(i for _, i in trace) == [0, 1, 2, 3]
        assert regret_curve(t, trace, 10)[3:].tolist() == [0.0] * 7
    res = simulate(t, "random", repeats=50, trials=6)
    assert res["mean"][3:] == [0.0, 0.0, 0.0]  # a mean of non-negative regrets is 0 only if all are


@pytest.mark.parametrize("name", SEARCHES)
def test_a_strategy_started_at_the_best_has_zero_regret_from_the_first_trial(tmp_path: Path, name) -> None:
    t = table(tmp_path, NINE)
    res = simulate(t, name, repeats=10, trials=5, first=[2])
    assert res["mean"] == [0.0] * 5 and res["hi"] == [0.0] * 5
    assert res["trials_to_top"]["mean"] == 1.0 and res["pick"]["linear_val"] == 0.72


@pytest.mark.parametrize("name", [*SEARCHES, "halving"])
def test_regret_never_increases(tmp_path: Path, name) -> None:
    t = table(tmp_path, NINE + [0.63, 0.59, 0.67])
    options = {"score": "ssl_loss", "bracket": 4} if name == "halving" else {}
    for seed in range(10):
        curve = regret_curve(t, STRATEGIES[name](t, 15, np.random.default_rng(seed), **options), 15)
        assert (np.diff(curve) <= 0).all() and (curve >= 0).all()
    res = simulate(t, name, repeats=30, trials=15, **options)
    assert (np.diff(res["mean"]) <= 1e-12).all()
    assert (np.diff(res["lo"]) <= 1e-12).all() and (np.diff(res["hi"]) <= 1e-12).all()


def test_the_band_holds_the_mean_of_random_on_four(tmp_path: Path) -> None:
    # not a law (a mean leaves a 10-90% band when over 90% of repeats share one value and the rest
    # lie to one side), but true here: each of the 4 regrets at t=1 has chance 1/4, at t=3 P(> 0) = 1/4
    res = simulate(table(tmp_path, FOUR), "random", repeats=200, trials=4)
    assert all(lo <= m <= hi for lo, m, hi in zip(res["lo"], res["mean"], res["hi"], strict=True))
    assert res["lo"][0] == 0.0 and res["hi"][0] == pytest.approx(0.17)  # 0.72 - 0.55


def test_halving_with_a_perfect_score_pays_the_cost_computed_by_hand(tmp_path: Path) -> None:
    t = table(tmp_path, NINE, epochs=6)
    rng = np.random.default_rng(0)
    # 9 x 1/4 epoch, 3 promoted x 3/4 more, 1 promoted x 5 more, over 6 epochs a full training
    assert halving_search(t, 40, rng, score="rankme", eta=3, bracket=9) == [(pytest.approx(19 / 12), 2)]
    # retrained from scratch at each rung: 9 x 1/4 + 3 x 1 epochs, then one full training
    restarted = halving_search(t, 40, rng, score="ssl_loss", eta=3, bracket=9, resume=False)
    assert restarted == [(pytest.approx(1.875), 2)]
    res = simulate(t, "halving", repeats=5, trials=3, score="rankme", eta=3, bracket=9)
    assert res["mean"] == [pytest.approx(0.72 - 0.49), 0.0, 0.0]  # nothing known at t=1: the worst
    assert res["trials_to_top"]["mean"] == pytest.approx(19 / 12)
    # brackets of 4: ceil(4/3) = 2 then 1 survive; 8 x 1/4 + ... the last bracket holds one arch
    trace = halving_search(t, 40, np.random.default_rng(1), score="rankme", eta=3, bracket=4)
    costs = np.diff([0.0] + [c for c, _ in trace])
    assert costs == pytest.approx([(4 / 4 + 2 * 3 / 4 + 5) / 6] * 2 + [1.0])
    with pytest.raises(SelfnasError, match="direction"):
        halving_search(t, 5, rng, score="alpha_req")


def test_tpe_runs_and_finds_the_best_by_the_table_size(tmp_path: Path) -> None:
    t = table(tmp_path, NINE)
    for seed in range(3):
        trace = tpe_search(t, 20, np.random.default_rng(seed), startup=3)
        assert sorted(i for _, i in trace) == list(range(9))  # never the same architecture twice
    res = simulate(t, "tpe", repeats=5, trials=9, startup=3)
    assert res["mean"][-1] == 0.0 and res["trials_to_top"]["reached"] == 5


@pytest.mark.parametrize("name", [*SEARCHES, "halving"])
def test_the_same_seeds_give_the_same_results(tmp_path: Path, name) -> None:
    t = table(tmp_path, NINE)
    options = {"score": "rankme", "bracket": 3} if name == "halving" else {}
    assert simulate(t, name, repeats=8, trials=6, **options) == simulate(
        t, name, repeats=8, trials=6, **options
    )


def test_trials_to_top_is_the_position_of_the_best(tmp_path: Path) -> None:
    t = table(tmp_path, FOUR)
    positions = [
        1 + [i for _, i in random_search(t, 4, np.random.default_rng(r))].index(1) for r in range(40)
    ]
    res = simulate(t, "random", repeats=40, trials=4)
    assert res["trials_to_top"]["mean"] == pytest.approx(np.mean(positions))
    assert res["trials_to_top"]["median"] == pytest.approx(np.median(positions))
    short = simulate(t, "random", repeats=40, trials=1)  # censored: only the lucky quarter reach it
    assert short["trials_to_top"]["reached"] == sum(p == 1 for p in positions)
    assert short["trials_to_top"]["median"] is None
    lucky = sum(p == 1 for p in positions)  # the rest are counted as the whole budget, 1 trial
    assert short["trials_to_top"]["restricted_mean"] == pytest.approx(1.0)
    two = simulate(t, "random", repeats=40, trials=2)
    assert two["trials_to_top"]["restricted_mean"] == pytest.approx(np.mean([min(p, 2) for p in positions]))
    assert two["trials_to_top"]["restricted_mean"] > 1.0 and lucky < 40
    with pytest.raises(SelfnasError, match="unknown strategy"):
        simulate(t, "grid")


def test_tpe_told_a_score_equal_to_the_truth_is_the_oracle_run(tmp_path: Path) -> None:
    t = table(tmp_path, NINE)  # rankme == linear_val at every fidelity
    for seed in range(3):
        oracle = tpe_search(t, 9, np.random.default_rng(seed), startup=2)
        assert tpe_search(t, 9, np.random.default_rng(seed), startup=2, score="rankme") == oracle


def test_tpe_with_the_halving_pruner_pays_an_epoch_per_pruned_trial(tmp_path: Path) -> None:
    t = table(tmp_path, NINE, epochs=4)
    for seed in range(5):
        trace = tpe_search(t, 40, np.random.default_rng(seed), startup=4, score="rankme", eta=2)
        full = [i for _, i in trace]
        pruned = 9 - len(full)
        assert pruned > 0 and 2 in full  # a perfect score never prunes the best: it leads its rung
        assert trace[-1][0] <= len(full) + pruned / 4 + 1e-9  # pruned ones cost 1 of 4 epochs
        assert np.diff([c for c, _ in trace]).min() >= 1.0 - 1e-9  # a full training costs 1
    # a score upside down (rankme = -linear_val) prunes the best unless it comes first
    rows = [row(f"a{i}", v, head((OPS[i % 3], OPS[(i // 3) % 3]))) for i, v in enumerate(NINE)]
    for r in rows:
        r["scores"]["rankme"] = {f: -v for f, v in r["scores"]["rankme"].items()}
    upside = load_table(rows, epochs=4)
    found = [
        2
        in [i for _, i in tpe_search(upside, 40, np.random.default_rng(s), startup=4, score="rankme", eta=2)]
        for s in range(10)
    ]
    assert 0 < sum(found) < 10
    with pytest.raises(SelfnasError, match="needs a score"):
        tpe_search(t, 5, np.random.default_rng(0), eta=2)


def test_screening_a_pool_drawn_with_replacement_pays_every_draw_and_trains_distinct_members(
    tmp_path: Path,
) -> None:
    t = table(tmp_path, NINE, epochs=4)
    rng = np.random.default_rng(3)
    # 30 draws from 9 members: every draw paid (0.01 each); the best 2 distinct by the init score
    trace = screen_search(t, 40, rng, screen=30, keep=2, score="rankme", cost=0.01, replace=True)
    assert [i for _, i in trace] == [2, 7]  # 0.72 and 0.70: 30 draws see all nine almost surely
    assert trace[0][0] == pytest.approx(30 * 0.01 + 1.0) and trace[1][0] == pytest.approx(0.3 + 2.0)
    # without replacement the pool is at most the table: 9 paid
    trace = screen_search(t, 40, rng, screen=30, keep=2, score="rankme", cost=0.01)
    assert trace[0][0] == pytest.approx(9 * 0.01 + 1.0)
    # a small pool drawn with replacement may miss the best: over many draws it sometimes does
    firsts = {
        screen_search(t, 40, np.random.default_rng(s), screen=3, keep=1, score="rankme", cost=0.0,
                      replace=True)[0][1]
        for s in range(50)
    }  # fmt: skip
    assert 2 in firsts and len(firsts) > 1
