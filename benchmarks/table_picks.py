"""The label-free pick of each ground-truth table, re-trained with more seeds against the default.

A table is the record of a study that trained every one of its architectures (40 sampled + the
hand-crafted ``default``) at the same budget. For each ``--scores`` score this script takes the
architecture that score ranks first at ``--fidelity`` among the seed-0 rows (no label is read:
``selfnas.groundtruth.table_analysis.pick_by_score``), trains it and the default with every seed of
``--seeds`` that the table does not hold yet (same plan, same budget, same data split; a row of the
table's own plan is built into the table, under its row lock; the others go to ``--work/<space>``,
resumable and kill-safe like the table), and compares their kNN and linear
probe on the held-out test images, mean over the seeds. Val is shown beside test; test decides
nothing (the comparison: ``selfnas/groundtruth/table_picks.py``). Prints the summary as JSON;
``--out`` writes it.

    python benchmarks/table_picks.py --tables benchmarks/tables --spaces heads cells resnet \
        --scores view_retrieval ssl_loss --caps none flops --seeds 0 1 2 --threads 1 \
        --out benchmarks/results_table_picks.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from selfnas.groundtruth.table_picks import RULES, compare_space
from selfnas.io import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=Path, default=Path("benchmarks/tables"))
    ap.add_argument(
        "--work", type=Path, default=None, help="where the extra seeds train (default TABLES/picks)"
    )
    ap.add_argument("--spaces", nargs="+", default=["heads", "cells", "resnet"])
    ap.add_argument("--scores", nargs="+", default=["view_retrieval", "ssl_loss"])
    ap.add_argument("--fidelity", default="final")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--caps",
        nargs="+",
        default=["none"],
        choices=["none", "flops", "params"],
        help="also pick among the architectures with at most the default's FLOPs / params",
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    result = {
        "benchmark": "table_picks",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rules": RULES,
        "spaces": {},
    }
    work_root = args.work or args.tables / "picks"
    for space in args.spaces:
        result["spaces"][space] = compare_space(
            space,
            args.tables,
            work_root,
            args.scores,
            args.fidelity,
            args.seeds,
            args.threads,
            tuple(args.caps),
        )
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
