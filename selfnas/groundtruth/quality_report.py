"""How well each label-free score ranks the architectures of a folder of ground-truth tables.

Every ``*.jsonl`` table of the folder (one search space a file: heads, cells, resnet; a space
without a file is left out, a partial table is analysed as it stands) is analysed by
:func:`~selfnas.groundtruth.table_analysis.analyse_table`: every sign-adjusted score x fidelity
and the baselines params and flops correlated with ``linear_val`` and ``knn_val`` over the
seed-0, non-collapsed architectures, the seed-to-seed noise ceiling, the cost of each score and of
a training epoch. Test accuracy is reported, never used to choose. :func:`measure_score_quality`
writes the results as JSON and a figure (one panel per space: Spearman with linear_val per score,
grouped by fidelity, the baselines as lines and the noise ceiling as a band), chooses the default
score, and returns a summary for the terminal. ``benchmarks/score_quality.py`` is its command line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from selfnas.groundtruth.table_analysis import (
    BASELINE_FIDELITY,
    FIDELITIES,
    RESAMPLES,
    analyse_table,
    choose_default_score,
    jsonable,
    read_table,
    table_epochs,
    table_paths,
)
from selfnas.io import atomic_write_json
from selfnas.render.plots import pyplot, save_figure
from selfnas.score_records import EMBEDDING_SCORES, SEARCH_SCORES, ZERO_COST_SCORES

FIDELITY_STYLE = {  # colour and marker per fidelity
    "init": ("#d95f02", "o"),
    "quarter": ("#7570b3", "s"),
    "epoch1": ("#1f78b4", "D"),
    "final": ("#08306b", "^"),
}
BASELINE_STYLE = {"params": ("tab:gray", "--"), "flops": ("tab:brown", ":")}
HEADLINE = "linear_val"


def analyse_folder(
    folder: Path, epochs: float | None = None, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Every table of ``folder``; a row's training epochs from each table's ``plan.json`` unless
    ``epochs`` is given (the cost of an epoch divides by them)."""
    spaces = {}
    for path in table_paths(folder):
        budget, source = (epochs, "--epochs") if epochs else table_epochs(path)
        analysed = analyse_table(read_table(path), budget, resamples, seed)
        analysed["cost"]["epochs_from"] = source
        spaces[path.stem] = {"table": str(path), **analysed}
    return {
        "benchmark": "score_quality",
        "tables": str(folder),
        "headline": "Spearman of direction * score with linear_val over seed-0 architectures",
        "spaces": spaces,
    }


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Per space: counts, ceilings, and per score@fidelity ``[rho, lo, hi, n, seconds]`` with linear_val."""
    out: dict[str, Any] = {"tables": results["tables"], "spaces": {}}
    for space, res in results["spaces"].items():
        rows = {}
        for e in res["scores"]:
            lin = e[HEADLINE]
            key = e["score"] if e["fidelity"] == BASELINE_FIDELITY else f"{e['score']}@{e['fidelity']}"
            rows[key] = [_r(lin["spearman"]), *map(_r, lin["spearman_ci"]), lin["n"], _r(e["seconds"], 4)]
        out["spaces"][space] = {
            "rows": res["rows"],
            "archs": res["archs"],
            "seed0_usable": res["seed0_usable"],
            "collapsed_rows": res["collapsed"]["rows"],
            "noise_ceiling_linear_val": [
                _r(res["noise_ceiling"][HEADLINE]["spearman"]),
                *map(_r, res["noise_ceiling"][HEADLINE]["interval"]),
                res["noise_ceiling"][HEADLINE]["n_archs"],
            ],
            "epoch_seconds": _r(res["cost"]["epoch_seconds"], 2),
            "linear_val_spearman [rho, lo, hi, n, seconds]": rows,
        }
    return out


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _direction(res: dict[str, Any], name: str) -> float:
    """The direction of score ``name`` in a space's results (its tick gets a minus when negative)."""
    return next((e["direction"] for e in res["scores"] if e["score"] == name), 1.0)


def _draw_panel(ax: Any, space: str, res: dict[str, Any], offsets: dict[str, float]) -> None:
    """One space's panel: a point per score x fidelity with its interval, the baselines as lines,
    the noise ceiling as a band."""
    entries = [e for e in res["scores"] if e["fidelity"] != BASELINE_FIDELITY]
    names = list(dict.fromkeys(e["score"] for e in entries))
    where = {name: i for i, name in enumerate(names)}
    shown = set()
    for e in entries:
        lin = e[HEADLINE]
        x = where[e["score"]] + offsets.get(e["fidelity"], 0.0)
        if not _finite(lin["spearman"]):  # too few rows, or a constant score: say so, draw nothing
            ax.text(x, -0.98, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color="0.5")
            continue
        colour, marker = FIDELITY_STYLE.get(e["fidelity"], ("black", "x"))
        lo, hi = lin["spearman_ci"]
        yerr = None
        if _finite(lo) and _finite(hi):
            yerr = [[max(0.0, lin["spearman"] - lo)], [max(0.0, hi - lin["spearman"])]]
        ax.errorbar(
            x, lin["spearman"], yerr=yerr, fmt=marker, color=colour, ms=5, capsize=2, lw=1,
            label=e["fidelity"] if e["fidelity"] not in shown else None,
        )  # fmt: skip
        shown.add(e["fidelity"])
    for e in res["scores"]:
        if e["fidelity"] == BASELINE_FIDELITY:
            colour, style = BASELINE_STYLE.get(e["score"], ("black", "-."))
            rho = e[HEADLINE]["spearman"]
            if _finite(rho):
                ax.axhline(rho, color=colour, ls=style, lw=1.2, label=f"{e['score']} ({rho:+.2f})")
            else:  # too few rows, or every architecture the same size
                ax.plot([], [], color=colour, ls=style, lw=1.2, label=f"{e['score']} (n/a)")
    ceiling = res["noise_ceiling"][HEADLINE]
    if _finite(ceiling["spearman"]):
        lo, hi = ceiling["interval"]
        if _finite(lo) and _finite(hi):
            ax.axhspan(lo, hi, color="tab:green", alpha=0.15, lw=0)
        ax.axhline(
            ceiling["spearman"], color="tab:green", lw=1.2,
            label=f"noise ceiling ({ceiling['spearman']:+.2f}, {ceiling['n_archs']} archs)",
        )  # fmt: skip
    else:
        ax.plot([], [], color="tab:green", lw=1.2, label="noise ceiling (n/a: < 2 archs with 2 seeds)")
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_xticks(
        range(len(names)),
        [("-" if _direction(res, n) < 0 else "") + n for n in names],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_xlim(-0.6, max(len(names), 1) - 0.4)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman with linear_val")
    ax.grid(axis="y", alpha=0.3)
    collapsed = res["collapsed"]["seed0_rows"]
    note = "" if any(_finite(e[HEADLINE]["spearman"]) for e in res["scores"]) else ": too few rows yet"
    ax.set_title(
        f"{space}: {res['seed0_usable']} architectures (seed 0"
        f"{f', {collapsed} collapsed left out' if collapsed else ''}){note}",
        fontsize=10,
    )
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def plot_spaces(results: dict[str, Any], path: Path) -> Path:
    """One panel per space: Spearman with linear_val of each sign-adjusted score, one point per
    fidelity with its bootstrap interval; params/flops as lines; the noise ceiling as a band."""
    plt = pyplot()
    spaces = results["spaces"]
    panels = max(1, len(spaces))
    fig, axes = plt.subplots(panels, 1, figsize=(12, 3.6 * panels), squeeze=False)
    if not spaces:
        axes[0][0].text(0.5, 0.5, f"no tables in {results['tables']}", ha="center", va="center")
        axes[0][0].set_axis_off()
    offsets = {f: (i - (len(FIDELITIES) - 1) / 2) * 0.18 for i, f in enumerate(FIDELITIES)}
    for ax, (space, res) in zip(axes[:, 0], spaces.items(), strict=False):
        _draw_panel(ax, space, res, offsets)
    fig.suptitle("Label-free scores vs linear probe on val (sign-adjusted; bars: bootstrap 95% over archs)")
    fig.tight_layout()
    return save_figure(fig, path)


def measure_score_quality(
    tables: Path,
    out: Path,
    figure: Path,
    epochs: float | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Analyse the tables of ``tables``, choose the default score, write the results to ``out`` and
    the figure to ``figure``; returns the results and their summary for the terminal."""
    results = jsonable(analyse_folder(tables, epochs, resamples, seed))
    results["figure"] = str(figure)
    label_free = [s for s in SEARCH_SCORES if s in EMBEDDING_SCORES + ZERO_COST_SCORES]
    results["default_score"] = choose_default_score(
        results["spaces"], label_free, ("init", "epoch1", "final")
    )
    atomic_write_json(out, results)
    plot_spaces(results, figure)
    shown = summary(results)
    shown["default_score"] = {
        fidelity: [
            [name, _r(mean), {k: _r(v) for k, v in per.items()}] for name, mean, per in block["ranking"][:5]
        ]
        for fidelity, block in results["default_score"]["by_fidelity"].items()
    }
    shown["goal (spaces with rho >= 0.6 above params and flops)"] = {
        k: v for k, v in results["default_score"]["goal"].items() if v
    }
    return results, shown
