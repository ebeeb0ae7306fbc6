"""Search strategies replayed on a folder of ground-truth tables, NAS-Bench style (no training).

For every ``*.jsonl`` table of the folder (one search space a file; a partial table is used as it
stands), :func:`replay_folder` runs ``repeats`` simulated studies (seeds 0..R-1) of ``trials``
full-training equivalents for each strategy of :mod:`selfnas.groundtruth.simulate`: random
(without replacement), TPE and regularised evolution over the genotype's categorical parameters,
successive halving ranked by each of ``halving_scores``, and ``selfnas search``'s default study
(TPE and the halving pruner) with each of ``search_scores``. The objective is the table's seed-0
``linear_val``; regret = best linear_val in the table - best found so far. It writes per space and
strategy the mean regret and its 10-90% band per trial, the trials to reach the table's top 5% and
the val/test accuracy of the picks as JSON, one figure per space, and returns a summary for the
terminal; :func:`replot` redraws the figures from that JSON. ``benchmarks/strategies_sim.py`` is
its command line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfnas.config import SearchConfig
from selfnas.groundtruth.simulate import BAND, TOP_FRACTION, SimTable, load_table, simulate
from selfnas.groundtruth.table_analysis import jsonable, table_epochs, table_paths
from selfnas.io import atomic_write_json
from selfnas.nas.optuna.optuna_search import TPE_OPTIONS
from selfnas.render.plots import pyplot, save_figure

SEARCHES = ("random", "tpe", "evolution")
STYLE = {"random": ("tab:gray", "-"), "tpe": ("tab:blue", "--"), "evolution": ("tab:green", ":")}
HALVING_STYLES = (("tab:red", "-"), ("tab:purple", "--"), ("tab:orange", "-."), ("tab:brown", ":"))
SHOWN_T = (1, 5, 10, 20, 40)


@dataclass(frozen=True)
class Replay:
    """What to replay on each table (the defaults of ``benchmarks/strategies_sim.py``)."""

    repeats: int = 200
    trials: int = 40
    halving_scores: tuple[str, ...] = ("ssl_loss", "rankme")
    search_scores: tuple[str, ...] = ("ssl_loss",)  # label-free scores of the simulated default search
    tune: tuple[tuple[int, bool, int | None], ...] = field(default=())  # (startup, multivariate, eta)
    eta: int = 3  # halving keeps the top 1/eta at each rung
    bracket: int = 9  # architectures a halving bracket starts with
    epochs: float | None = None  # full budget (None: each table's plan.json)


def notes(table: SimTable, trials: int) -> list[str]:
    out = []
    if table.top_k == 1:
        out.append(
            f"only {table.n} usable architectures: the top {TOP_FRACTION:.0%} is the single best "
            f"({table.archs[int(table.val.argmax())]}, linear_val {table.best:.4f})"
        )
    if trials > table.n:
        out.append(
            f"trials beyond {table.n} add nothing: random, tpe and evolution have seen every architecture"
        )
    return out


def search_default(score: str) -> dict[str, Any]:
    """``selfnas search``'s default study (TPE sampler and halving pruner, as configured by
    :class:`selfnas.config.SearchConfig`'s defaults) with label-free ``score`` as its value."""
    search = SearchConfig()
    eta = search.reduction_factor if search.pruner == "halving" else None
    return {"score": score, "startup": search.startup_trials, "multivariate": TPE_OPTIONS["multivariate"],
            "eta": eta}  # fmt: skip


def run_space(path: Path, settings: Replay) -> dict[str, Any]:
    """Every strategy of ``settings`` on the table at ``path``: its runs and the table's facts."""
    epochs, source = (settings.epochs, "--epochs") if settings.epochs else table_epochs(path)
    table = load_table(path, epochs)
    runs: dict[str, Any] = {}
    plans = (
        [(name, name, {}) for name in SEARCHES]
        + [
            (f"halving[{s}]", "halving", {"score": s, "eta": settings.eta, "bracket": settings.bracket})
            for s in settings.halving_scores
        ]
        + [(f"search[{s}]", "tpe", search_default(s)) for s in settings.search_scores]
    )
    for startup, multivariate, eta in settings.tune:
        for s in settings.search_scores:
            options = {"score": s, "startup": startup, "multivariate": multivariate, "eta": eta}
            plans.append((f"tune[{s},startup={startup},mv={int(multivariate)},eta={eta}]", "tpe", options))
    for key, strategy, options in plans:
        start = time.perf_counter()
        runs[key] = simulate(table, strategy, settings.repeats, settings.trials, **options)
        runs[key]["seconds"] = round(time.perf_counter() - start, 2)
    return {
        "table": str(path),
        "archs": table.n,
        "best_linear_val": table.best,
        "best_arch": table.archs[int(table.val.argmax())],
        "top_k": table.top_k,
        "top_threshold": table.threshold,
        "epochs": epochs,
        "epochs_from": source,
        "parameters": dict(zip(table.names, (len(c) for c in table.choices), strict=True)),
        "notes": notes(table, settings.trials),
        "strategies": runs,
    }


def plot_space(space: str, res: dict[str, Any], path: Path) -> Path:
    """Regret vs trials: mean line and 10-90% band over repeats, one colour per strategy. The
    ``--tune`` variants of the default search are left to the JSON and RESULTS.md: drawn too, their
    bands would hide the comparison the figure is for."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    halving = iter(HALVING_STYLES)
    shown = {k: r for k, r in res["strategies"].items() if not k.startswith("tune[")}
    for key, run in shown.items():  # line styles differ: curves often coincide
        default = key == f"search[{SearchConfig().score}]"  # what `selfnas search --strategy tpe` does
        colour, style = ("black", "-") if default else STYLE.get(key) or next(halving, ("black", "-"))
        top = run["trials_to_top"]
        reached = f"top {TOP_FRACTION:.0%} in {top['mean']:.1f}" if top["mean"] else f"top {TOP_FRACTION:.0%}"
        label = (
            f"{'default: ' if default else ''}{key} ({reached}, {top['reached']}/{run['repeats']} reached)"
        )
        ax.plot(
            run["t"],
            run["mean"],
            color=colour,
            ls=style,
            lw=2.6 if default else 1.4,
            label=label,
            drawstyle="steps-post",
        )
        ax.fill_between(run["t"], run["lo"], run["hi"], color=colour, alpha=0.12, lw=0, step="post")
    ax.set_xlabel("trials (full-training equivalents; halving counts its partial trainings)")
    ax.set_ylabel("regret in linear_val (best in table - best found)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    repeats = next(iter(res["strategies"].values()))["repeats"]
    ax.set_title(
        f"{space}: {res['archs']} architectures, {repeats} repeats; bands {BAND[0]:.0f}-{BAND[1]:.0f}%"
        + (" (partial table)" if res["top_k"] == 1 else ""),
        fontsize=10,
    )
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Per space and strategy: mean regret at a few t, trials to top 5% [mean, median, reached], picks."""
    out: dict[str, Any] = {}
    for space, res in results["spaces"].items():
        out[space] = {"archs": res["archs"], "best": round(res["best_linear_val"], 4), "notes": res["notes"]}
        for key, run in res["strategies"].items():
            top, pick = run["trials_to_top"], run["pick"]
            out[space][key] = {
                "regret@t": [[t, round(run["mean"][t - 1], 4)] for t in SHOWN_T if t <= run["trials"]],
                "to_top [mean, median, reached/R, restricted mean]": [
                    None if top["mean"] is None else round(top["mean"], 2),
                    None if top["median"] is None else round(top["median"], 2),
                    f"{top['reached']}/{run['repeats']}",
                    round(top["restricted_mean"], 2),
                ],
                "pick [val, test]": [
                    None if pick.get(k) is None else round(pick[k], 4) for k in ("linear_val", "linear_test")
                ],
                "seconds": run["seconds"],
            }
    return out


def replay_folder(tables: Path, settings: Replay, out: Path, figures: Path) -> dict[str, Any]:
    """Replay every strategy on every table of ``tables``; write the results to ``out`` and one
    figure per space to ``figures/strategies_<space>.png``; returns the summary."""
    results = {
        "benchmark": "strategies_sim",
        "tables": str(tables),
        "repeats": settings.repeats,
        "trials": settings.trials,
        "band_percentiles": list(BAND),
        "rules": {
            "objective": "seed-0 linear_val of non-collapsed rows; linear_test only reported for the picks",
            "regret": "best linear_val in the table - best fully evaluated so far (best - worst before any)",
            "trials": "full-training equivalents; halving pays quarter 0.25, epoch1 1, final `epochs` "
            "epochs over `epochs`, a promoted architecture resuming its run",
            "trials_to_top": f"cost of the first find in the top {TOP_FRACTION:.0%} (at least the best); "
            "mean over the repeats that reached it within the trials, median over all (None if < half), "
            "restricted mean over all with a repeat that never got there counted as the whole budget",
            "seeds": "repeat r uses numpy default_rng(r) for every strategy",
            "band": "10th-90th percentile of the regret over repeats at each t; the mean can lie above it "
            "where over 90% of repeats share one regret (late t: 0) and the rest are positive",
        },
        "spaces": {},
    }
    for path in table_paths(tables):
        results["spaces"][path.stem] = res = run_space(path, settings)
        res["figure"] = str(plot_space(path.stem, res, figures / f"strategies_{path.stem}.png"))
    atomic_write_json(out, jsonable(results))
    return summary(results)


def replot(out: Path, figures: Path) -> dict[str, Any]:
    """Redraw the figures from the results in ``out`` (nothing simulated); returns the summary."""
    done = json.loads(out.read_text(encoding="utf-8"))
    for space, res in done["spaces"].items():
        plot_space(space, res, figures / f"strategies_{space}.png")
    return summary(done)
