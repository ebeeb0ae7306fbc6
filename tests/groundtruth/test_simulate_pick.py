"""A simulated study picks its architecture on validation accuracy; test accuracy is only reported."""

from __future__ import annotations

from pathlib import Path

from selfnas.groundtruth.simulate import load_table, simulate
from selfnas.io import write_jsonl

OPS = ("identity", "linear_bn_relu", "max_pool_3")


def _row(i: int, val: float, test: float) -> dict:
    genotype = {
        "format": "selfnas-genotype", "version": 1, "space": "heads", "method": "simsiam",
        "projector": {"layers": [{"op": OPS[i % 3], "dim": 64}, {"op": OPS[i // 3], "dim": 64}]},
        "predictor": None,
    }  # fmt: skip
    scores = {f: val for f in ("init", "quarter", "epoch1", "final")}
    return {
        "arch": f"a{i}", "description": f"a{i}", "genotype": genotype, "seed": 0, "params": 1.0,
        "flops": 1.0, "scores": {"rankme": scores, "ssl_loss": {f: -v for f, v in scores.items()}},
        "truth": {"linear_val": val, "linear_test": test, "knn_val": val, "knn_test": test},
        "collapsed": False,
    }  # fmt: skip


def test_the_pick_is_the_best_on_val_even_when_another_is_best_on_test(tmp_path: Path) -> None:
    # a1 is best on val (0.72) but only third on test; a0 is best on test (0.70)
    rows = [_row(0, 0.60, 0.70), _row(1, 0.72, 0.58), _row(2, 0.55, 0.50), _row(3, 0.68, 0.65)]
    write_jsonl(tmp_path / "heads.jsonl", rows)
    table = load_table(tmp_path / "heads.jsonl")
    result = simulate(table, "random", repeats=5, trials=4)  # four trials evaluate all four
    assert result["pick"] == {"linear_val": 0.72, "linear_test": 0.58}
