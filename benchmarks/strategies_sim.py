"""Search strategies replayed on the ground-truth tables, NAS-Bench style (no training).

For every ``*.jsonl`` table in ``--tables`` (one search space a file; a partial table is used as it
stands), runs ``--repeats`` simulated studies (seeds 0..R-1) of ``--trials`` full-training
equivalents for each strategy of ``selfnas/groundtruth/simulate.py`` (the replay:
``selfnas/groundtruth/strategy_replay.py``): random (without replacement),
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
import sys
from pathlib import Path
from typing import Any

from selfnas.groundtruth.strategy_replay import Replay, replay_folder, replot
from selfnas.groundtruth.table_analysis import compact_json, jsonable


def tune_grid(text: str) -> tuple[int, bool, int | None]:
    """``STARTUP,MULTIVARIATE,ETA`` (e.g. ``5,1,2``; eta 0 = no pruning)."""
    startup, multivariate, eta = (int(v) for v in text.split(","))
    return startup, bool(multivariate), eta or None


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
        out = replot(args.out, args.figures)
        print(compact_json(out))
        return out
    settings = Replay(
        repeats=args.repeats,
        trials=args.trials,
        halving_scores=tuple(args.halving_scores),
        search_scores=tuple(args.search_scores),
        tune=tuple(args.tune),
        eta=args.eta,
        bracket=args.bracket,
        epochs=args.epochs,
    )
    out = replay_folder(args.tables, settings, args.out, args.figures)
    print(compact_json(jsonable(out)))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
