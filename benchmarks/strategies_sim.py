"""Search strategies replayed on the ground-truth tables, NAS-Bench style (no training).

For every ``*.jsonl`` table in ``--tables`` (one search space a file; a partial table is used as it
stands), runs ``--repeats`` simulated studies (seeds 0..R-1) of ``--trials`` full-training
equivalents for each strategy of ``selfnas/groundtruth/simulate.py``: random (without replacement),
TPE and regularised evolution over the genotype's categorical parameters (a suggestion maps to the
nearest unseen architecture), and successive halving ranked by each ``--halving-scores`` score at
quarter then epoch1 before the full budget. The objective is the table's seed-0 ``linear_val``;
regret = best linear_val in the table - best found so far. Writes per space and strategy the mean
regret and its 10-90% band per trial, the trials to reach the table's top 5%, and the val/test
accuracy of the picks, as JSON to ``--out``; one figure per space ``<figures>/strategies_<space>.png``;
prints a summary as JSON.

    python benchmarks/strategies_sim.py --tables benchmarks/tables --repeats 200 --trials 40
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from selfnas.config import SearchConfig
from selfnas.groundtruth.simulate import BAND, TOP_FRACTION, SimTable, load_table, simulate
from selfnas.groundtruth.table_analysis import DEFAULT_EPOCHS, jsonable
from selfnas.io import atomic_write_json
from selfnas.nas.optuna.optuna_search import TPE_OPTIONS
from selfnas.render.plots import pyplot, save_figure

SPACE_ORDER = ("heads", "cells", "resnet", "resnet-variants")
SEARCHES = ("random", "tpe", "evolution")
STYLE = {"random": ("tab:gray", "-"), "tpe": ("tab:blue", "--"), "evolution": ("tab:green", ":")}
HALVING_STYLES = (("tab:red", "-"), ("tab:purple", "--"), ("tab:orange", "-."), ("tab:brown", ":"))
SHOWN_T = (1, 5, 10, 20, 40)


def table_paths(folder: Path) -> list[Path]:
    """The ``*.jsonl`` tables of ``folder``, known spaces first, then by name."""
    rank = {name: i for i, name in enumerate(SPACE_ORDER)}
    paths = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    return sorted(paths, key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def table_epochs(path: Path, default: float = DEFAULT_EPOCHS) -> tuple[float, str]:
    """The full training budget of a table (``<stem>/plan.json``, else ``default``) and its source."""
    plan = path.with_suffix("") / "plan.json"
    try:
        return float(json.loads(plan.read_text())["config"]["train"]["optim"]["epochs"]), str(plan)
    except (OSError, KeyError, TypeError, ValueError):
        return float(default), "default"


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


def tune_grid(text: str) -> tuple[int, bool, int | None]:
    """``STARTUP,MULTIVARIATE,ETA`` (e.g. ``5,1,2``; eta 0 = no pruning)."""
    startup, multivariate, eta = (int(v) for v in text.split(","))
    return startup, bool(multivariate), eta or None


def run_space(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    epochs, source = (args.epochs, "--epochs") if args.epochs else table_epochs(path)
    table = load_table(path, epochs)
    runs: dict[str, Any] = {}
    plans = (
        [(name, name, {}) for name in SEARCHES]
        + [
            (f"halving[{s}]", "halving", {"score": s, "eta": args.eta, "bracket": args.bracket})
            for s in args.halving_scores
        ]
        + [(f"search[{s}]", "tpe", search_default(s)) for s in args.search_scores]
    )
    for startup, multivariate, eta in args.tune:
        for s in args.search_scores:
            options = {"score": s, "startup": startup, "multivariate": multivariate, "eta": eta}
            plans.append((f"tune[{s},startup={startup},mv={int(multivariate)},eta={eta}]", "tpe", options))
    for key, strategy, options in plans:
        start = time.perf_counter()
        runs[key] = simulate(table, strategy, args.repeats, args.trials, **options)
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
        "notes": notes(table, args.trials),
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


def compact_json(obj: Any, indent: int = 0) -> str:
    """JSON with one key a line and every list on one line (a summary that reads in a terminal)."""
    if isinstance(obj, dict) and obj:
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(str(k))}: {compact_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=Path, default=Path("benchmarks/tables"))
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results_strategies_sim.json"))
    ap.add_argument("--figures", type=Path, default=Path("docs"))
    ap.add_argument("--halving-scores", nargs="+", default=["ssl_loss", "rankme"])
    ap.add_argument(
        "--search-scores",
        nargs="*",
        default=["ssl_loss"],
        help="label-free scores for the simulated default search (TPE + halving pruner)",
    )
    ap.add_argument(
        "--tune",
        nargs="*",
        type=tune_grid,
        default=[],
        help="TPE settings STARTUP,MULTIVARIATE,ETA to compare (eta 0: no pruner)",
    )
    ap.add_argument("--eta", type=int, default=3, help="halving keeps the top 1/eta at each rung")
    ap.add_argument("--bracket", type=int, default=9, help="architectures a halving bracket starts with")
    ap.add_argument("--epochs", type=float, default=None, help="full budget (default: the table's plan.json)")
    ap.add_argument("--replot", action="store_true", help="redraw the figures from --out; simulate nothing")
    args = ap.parse_args(argv)
    if args.replot:
        done = json.loads(args.out.read_text(encoding="utf-8"))
        for space, res in done["spaces"].items():
            plot_space(space, res, args.figures / f"strategies_{space}.png")
        out = summary(done)
        print(compact_json(out))
        return out
    results = {
        "benchmark": "strategies_sim",
        "tables": str(args.tables),
        "repeats": args.repeats,
        "trials": args.trials,
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
    for path in table_paths(args.tables):
        results["spaces"][path.stem] = res = run_space(path, args)
        res["figure"] = str(plot_space(path.stem, res, args.figures / f"strategies_{path.stem}.png"))
    atomic_write_json(args.out, jsonable(results))
    out = summary(results)
    print(compact_json(jsonable(out)))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
