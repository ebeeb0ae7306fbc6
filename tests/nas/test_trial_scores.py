"""What a study records per trial: label-free scores, accuracies, correlations, plots."""

import math

import numpy as np
import pytest

from selfnas.api import search
from selfnas.config import build_config
from selfnas.errors import ConfigError
from selfnas.io import read_jsonl
from selfnas.nas.strategies.trial_scores import LABEL_FREE, SIGN

CELLS = ["search.space=cells", "search.nodes=2", "search.cell_width=4", "search.cell_layers=3",
         "search.trial_epochs=1", "search.pruner=none", "search.probe_limit=300"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("single_thread")


def test_a_study_records_scores_accuracies_correlations_and_plots(tmp_path, tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.trials=4",
                                  "search.score=rankme"])  # fmt: skip
    summary = search(cfg, out=tmp_path / "s", quiet=True)
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    for r in rows:
        assert set(r["scores"]) == set(LABEL_FREE) and all(math.isfinite(v) for v in r["scores"].values())
        assert 0 <= r["accuracy"]["knn"] <= 1 and 0 <= r["accuracy"]["linear"] <= 1
        assert r["value"] == pytest.approx(SIGN["rankme"] * r["scores"]["rankme"], rel=1e-5)
        last = r["intermediate"][max(r["intermediate"], key=int)]
        assert r["value"] == pytest.approx(last, rel=1e-5)  # the final scores match the last epoch
        assert r["parameters"] > 0 and r["architecture"] is None or isinstance(r["architecture"], str)
    assert summary["score"] == "rankme" and summary["supervised_proxy"] is False
    corr = summary["correlations"]
    assert set(corr) == {f"{s}/{t}" for s in LABEL_FREE for t in ("knn_acc", "linear_acc")}
    ranks = [r["scores"]["rankme"] for r in rows], [r["accuracy"]["linear"] for r in rows]
    from scipy import stats

    expected = stats.spearmanr(*ranks).statistic
    got = corr["rankme/linear_acc"]["spearman"]
    assert (got is None and np.isnan(expected)) or got == pytest.approx(expected)
    plots = {p.name for p in (tmp_path / "s" / "plots").iterdir()}
    assert {"study_history.png", "score_vs_accuracy.png"} <= plots


def test_label_eval_can_be_switched_off(tmp_path, tiny_overrides, capfd):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.trials=2",
                                  "search.label_eval=false"])  # fmt: skip
    summary = search(cfg, out=tmp_path / "s", quiet=True)
    assert "epoch 1: loss" not in capfd.readouterr().err  # trials do not print their epochs
    assert all(r["accuracy"] == {} for r in read_jsonl(tmp_path / "s" / "trials.jsonl"))
    assert summary["correlations"] == {}


def test_knn_score_is_a_supervised_proxy_and_needs_labels(tmp_path, tiny_overrides):
    labeled = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.trials=2",
                                      "search.score=knn"])  # fmt: skip
    summary = search(labeled, out=tmp_path / "s", quiet=True)
    assert summary["supervised_proxy"] is True
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    assert all(-1 <= r["value"] <= 0 for r in rows)  # minus the kNN accuracy
    images = np.random.default_rng(0).integers(0, 255, size=(200, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "u.npy", images)
    npy = f"data.name=npy:{tmp_path / 'u.npy'}"
    unlabeled = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", npy,
                                        "search.score=knn"])  # fmt: skip
    with pytest.raises(ConfigError, match="supervised proxy"):
        search(unlabeled, out=tmp_path / "u", quiet=True)
