"""Does `selfnas search`'s default study find a backbone better than the hand-crafted default?

A ground-truth table (``benchmarks/tables``) fixes a space, a training budget and a data split, and
holds the hand-crafted ``default`` trained with 3 seeds. This script runs the default study
(``selfnas search --strategy tpe``: TPE, the halving pruner, the default label-free score) over
the table's space, with the table's training config and a trial as long as a table row, then
trains the study's best architecture with ``--seeds`` at the table's budget (same plan, same data
split, the table's row builder: resumable and kill-safe) and compares its kNN and linear probe on
the held-out test images with the default's rows of the table, mean over the seeds. No label is
read by the search; val is shown beside test; test decides nothing. Rerunning continues the study
(``--resume``) and trains only missing rows. Prints the summary as JSON; ``--out`` writes it. The
comparison: ``selfnas/groundtruth/study_vs_default.py``.

    python benchmarks/study_vs_default.py --tables benchmarks/tables --space cells --trials 12 \
        --seeds 0 1 2 --threads 1 --out benchmarks/results_study_vs_default_cells.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from selfnas.errors import SelfnasError
from selfnas.groundtruth.study_vs_default import RULES, compare
from selfnas.io import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=Path, default=Path("benchmarks/tables"))
    ap.add_argument("--space", default="cells", help="the table (file stem) whose space is searched")
    ap.add_argument("--work", type=Path, default=None, help="study and rows (default TABLES/studies)")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--study-seed",
        type=int,
        default=None,
        help="seed of the study (default: the table's sample seed); its own folder in --work",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        compared = compare(
            args.tables,
            args.space,
            args.work or args.tables / "studies",
            args.trials,
            args.seeds,
            args.threads,
            args.study_seed,
        )
    except SelfnasError as exc:
        raise SystemExit(f"study_vs_default: {exc}") from None
    result = {
        "benchmark": "study_vs_default",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rules": RULES,
        args.space: compared,
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
