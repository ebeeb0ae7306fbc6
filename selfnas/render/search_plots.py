"""Plots of an Optuna search study: its history, what mattered, and whether its scores predict accuracy."""

from __future__ import annotations

import math
import warnings
from typing import Any

import optuna

from selfnas.render.plots import pyplot, save_figure
from selfnas.rundir import RunDir


def plot_search_study(
    run: RunDir, rows: list[dict[str, Any]], study: optuna.Study, score_names: tuple[str, ...]
) -> list[str]:
    """Write ``plots/study_history.png``, ``study_importance.png`` and ``score_vs_accuracy.png``
    (each only when the study has what it needs; ``score_names`` are the label-free scores to set
    against accuracy); returns the names written."""
    written = []
    if _history(run, rows):
        written.append("study_history.png")
    if _importance(run, study):
        written.append("study_importance.png")
    if _score_vs_accuracy(run, rows, score_names):
        written.append("score_vs_accuracy.png")
    return written


def _history(run: RunDir, rows: list[dict[str, Any]]) -> bool:
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    if not done:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.scatter([r["number"] for r in done], [r["value"] for r in done], s=18, label="complete")
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["intermediate"]]
    if pruned:  # a pruned trial at the last value it reported
        last = [r["intermediate"][max(r["intermediate"], key=int)] for r in pruned]
        ax.scatter([r["number"] for r in pruned], last, s=18, marker="x", color="tab:gray", label="pruned")
    best, xs, ys = math.inf, [], []
    for r in sorted(done, key=lambda r: r["number"]):
        best = min(best, r["value"])
        xs.append(r["number"])
        ys.append(best)
    ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    ax.set(title="Study history (lower is better)", xlabel="trial", ylabel="objective")
    ax.legend(fontsize=8)
    save_figure(fig, run.plots / "study_history.png")
    return True


def _importance(run: RunDir, study: optuna.Study) -> bool:
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 3:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importance = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
    except (RuntimeError, ValueError):  # e.g. every trial had the same value
        return False
    if not importance:
        return False
    top = list(importance.items())[:12][::-1]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(top) + 1.2))
    ax.barh([k for k, _ in top], [v for _, v in top], color="tab:green")
    ax.set(title="Parameter importance (fANOVA)", xlabel="share of the objective's variance")
    ax.tick_params(axis="y", labelsize=8)
    save_figure(fig, run.plots / "study_importance.png")
    return True


def _score_vs_accuracy(run: RunDir, rows: list[dict[str, Any]], score_names: tuple[str, ...]) -> bool:
    evaluated = [r for r in rows if r["state"] == "COMPLETE" and r["accuracy"].get("linear") is not None]
    names = [s for s in score_names if any(r["scores"].get(s) is not None for r in evaluated)]
    if len(evaluated) < 2 or not names:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        pts = [(r["scores"][name], r["accuracy"]["linear"]) for r in evaluated]
        pts = [p for p in pts if p[0] is not None]
        ax.scatter([p[0] for p in pts], [100 * p[1] for p in pts], s=16)
        ax.set(xlabel=name, ylabel="linear accuracy on val (%)" if name == names[0] else None)
    fig.suptitle("Label-free score vs. accuracy, one point per trial", fontsize=10)
    save_figure(fig, run.plots / "score_vs_accuracy.png")
    return True
