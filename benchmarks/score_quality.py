"""How well each label-free score ranks the architectures of the ground-truth tables.

Reads every ``*.jsonl`` table in ``--tables`` (one search space a file: heads, cells, resnet; a
space without a file is left out, a partial table is analysed as it stands) and, per space,
correlates every sign-adjusted score x fidelity and the baselines params and flops with
``linear_val`` and ``knn_val`` over the seed-0, non-collapsed architectures (Spearman and Kendall,
bootstrap 95% intervals over architectures), measures the seed-to-seed noise ceiling and the cost
of each score and of a training epoch (see ``selfnas/groundtruth/table_analysis.py``; the
folder, the figure and the summary: ``selfnas/groundtruth/quality_report.py``). Test accuracy is
reported, never used to choose. Writes the full results as JSON to ``--out``, a figure to
``--figure`` (one panel per space: Spearman with linear_val per score, grouped by fidelity, the
baselines as lines and the noise ceiling as a band), and prints a summary as JSON.

    python benchmarks/score_quality.py --tables benchmarks/tables
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from selfnas.groundtruth.quality_report import measure_score_quality
from selfnas.groundtruth.table_analysis import RESAMPLES, compact_json


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=Path, default=Path("benchmarks/tables"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results_score_quality.json"))
    ap.add_argument("--figure", type=Path, default=Path("docs/score_quality.png"))
    ap.add_argument(
        "--epochs", type=float, default=None, help="a row's training epochs (default: each table's plan.json)"
    )
    ap.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = ap.parse_args(argv)
    if not args.tables.is_dir():
        print(f"warning: {args.tables} is not a folder; no tables to analyse", file=sys.stderr)
    results, shown = measure_score_quality(
        args.tables, args.out, args.figure, args.epochs, args.resamples, args.seed
    )
    print(compact_json(shown))
    return results


if __name__ == "__main__":
    main()
