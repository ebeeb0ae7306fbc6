"""What a study records per trial: label-free scores, accuracies, correlations, plots."""

import math

import numpy as np
import pytest

from selfnas.api import search
from selfnas.config import build_config
from selfnas.errors import ConfigError, TrainingError
from selfnas.io import read_jsonl
from selfnas.nas.optuna.trial_scores import AT_INIT, LABEL_FREE, TrialTrainer
from selfnas.nas.scoring import DIRECTION
from selfnas.rundir import RunDir

CELLS = ["search.space=cells", "search.nodes=2", "search.cell_width=4", "search.cell_layers=3",
         "search.trial_epochs=1", "search.pruner=none", "search.probe_limit=300"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("single_thread")


def test_a_study_records_scores_accuracies_correlations_and_plots(tmp_path, tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.trials=4",
                                  "search.score=rankme"])  # fmt: skip
    summary = search(cfg, out=tmp_path / "s", quiet=True)
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    for r in rows:
        assert r["state"] == "COMPLETE" and r["fail_reason"] is None
        assert set(r["scores"]) == {*LABEL_FREE, "normalized_std", "collapsed"}  # every score, every trial
        for name in ("ssl_loss", "rankme", "alignment", "uniformity", "naswot", "params", "flops"):
            assert math.isfinite(r["scores"][name]), name
        assert 0 <= r["accuracy"]["knn"] <= 1 and 0 <= r["accuracy"]["linear"] <= 1
        assert r["value"] == pytest.approx(-DIRECTION["rankme"] * r["scores"]["rankme"], rel=1e-5)
        last = r["intermediate"][max(r["intermediate"], key=int)]
        assert r["value"] == pytest.approx(last, rel=1e-5)  # the final scores match the last epoch
        assert r["parameters"] > 0
        assert r["architecture"] is None  # a cell genotype has no one-line description (variants do)
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


@pytest.mark.parametrize("score", ["naswot", "params"])
def test_a_zero_cost_score_is_read_at_initialisation_and_the_trial_never_trains(
    tmp_path, tiny_overrides, score
):
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.trials=3",
                                  f"search.score={score}"])  # fmt: skip
    summary = search(cfg, out=tmp_path / "s", quiet=True)
    assert summary["trials"] == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 0}
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    for r in rows:
        assert set(r["scores"]) == set(AT_INIT)  # no embedding score: nothing was trained
        assert r["value"] == pytest.approx(-DIRECTION[score] * r["scores"][score], rel=1e-6)
        assert r["intermediate"] == {} and r["accuracy"] == {}  # no epoch reported, no probe
        trial = RunDir(tmp_path / "s" / "trials" / f"{r['number']:04d}")
        assert not trial.metrics.exists() and not trial.checkpoint.exists() and not trial.model.exists()
    best = min(rows, key=lambda r: r["value"])
    assert summary["best_trial"] == best["number"] and summary["best_scores"] == best["scores"]


def test_a_non_finite_score_fails_the_trial_instead_of_pruning_it(tmp_path, tiny_overrides, monkeypatch):
    real_scores, real_fit = TrialTrainer.embedding_scores, TrialTrainer.fit

    def nan_rankme_in_trial_0(self):
        scores = real_scores(self)
        if self.trial.number == 0:
            scores["rankme"] = math.nan
        return scores

    def trial_1_diverges(self, *args, **kwargs):  # what the trainer raises once its NaN rollbacks ran out
        if self.trial.number == 1:
            raise TrainingError("loss became NaN/inf at step 3")
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(TrialTrainer, "embedding_scores", nan_rankme_in_trial_0)
    monkeypatch.setattr(TrialTrainer, "fit", trial_1_diverges)
    cfg = build_config(overrides=[*tiny_overrides, *CELLS, "search.strategy=random", "search.trials=3",
                                  "search.score=rankme", "search.pruner=halving",
                                  "search.label_eval=false"])  # fmt: skip
    summary = search(cfg, out=tmp_path / "s", quiet=True)  # the study goes on after either failure
    assert summary["trials"] == {"COMPLETE": 1, "PRUNED": 0, "FAIL": 2} and summary["best_trial"] == 2
    first, second, _ = read_jsonl(tmp_path / "s" / "trials.jsonl")
    assert second["state"] == "FAIL" and second["fail_reason"] == "loss became NaN/inf at step 3"
    assert first["state"] == "FAIL" and first["value"] is None and first["intermediate"] == {}
    assert first["fail_reason"] == "non-finite score: rankme is nan"
    assert first["scores"]["rankme"] is None and math.isfinite(first["scores"]["ssl_loss"])
    status = RunDir(tmp_path / "s" / "trials" / "0000").read_status()
    assert status["state"] == "failed" and "rankme is nan" in status["message"]
