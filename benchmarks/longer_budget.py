"""Does the search's win hold when training is longer? (issue 32, item 4). Prints JSON.

Takes the best find of ``--results`` (``benchmarks/results_search_vs_random.json``: of the space's
studies, the find with the highest mean ``linear_val``: val chooses, test never does),
``resnet_small`` widened to the find's feature width, and ``--random`` random architectures of the
table (drawn with ``--draw-seed`` among the members the table holds with every seed in
``--seeds``), and trains each with ``--seeds`` at ``--factor`` times the table's epochs, with the
table's row builder (same data split, scores and truth; resumable and kill-safe) in
``TABLES/studies/SPACE.long{factor}x``. The same architectures' rows at the table's own budget are
read where they already are (the study's folder, the widened default's folder, the table). Reports
kNN / linear val and test means at both budgets and whether the order by ``linear_test`` is the
same.

    python benchmarks/longer_budget.py --space cells --factor 4 --seeds 0 1 2 --threads 1 \
        --out benchmarks/results_longer_budget.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from selfnas.groundtruth.baselines import equal_width_default, feature_width
from selfnas.groundtruth.study_vs_default import FOUND, with_found
from selfnas.groundtruth.table_picks import REFERENCE, TRUTH
from selfnas.groundtruth.tables import Row, TableDir, ensure_rows, row_config
from selfnas.io import atomic_write_json
from selfnas.models.genotype import genotype_from_json

WIDE = "default_equal_width"


def best_study(results: dict[str, Any], space: str) -> dict[str, Any]:
    """The study whose find has the highest mean linear_val (test is never read to choose)."""
    studies = results["studies"].get(space) or []
    if not studies:
        raise SystemExit(
            f"longer_budget: {space} has no finished study in the results; run search_vs_random first"
        )
    return max(studies, key=lambda s: s["find"]["linear_val"])


def seeded_members(table: TableDir, plan: dict[str, Any], seeds: list[int]) -> list[str]:
    """The table's random members that it holds with every seed in ``seeds`` (finished rows)."""
    ids = [a["id"] for a in plan["archs"] if a["id"] != REFERENCE]
    return [a for a in ids if all(table.row(Row(a, s)).exists() for s in seeds)]


def means(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.mean(r["truth"][k] for r in rows) for k in TRUTH}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=Path, default=Path("benchmarks/tables"))
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results_search_vs_random.json"))
    ap.add_argument("--space", default="cells")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--random", type=int, default=2, help="random architectures of the table")
    ap.add_argument("--draw-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    table = TableDir(args.tables / args.space)
    plan = json.loads(table.plan.read_text(encoding="utf-8"))
    study = best_study(json.loads(args.results.read_text(encoding="utf-8")), args.space)
    genotype = genotype_from_json(study["find"]["genotype"])
    extended = with_found(plan, genotype)
    dim = feature_width(row_config(extended, Row(FOUND, 0)).model.model_dump())
    extended["archs"].append(
        {"id": WIDE, "genotype": None, "model": equal_width_default(dim),
         "description": f"resnet_small widened to {dim} features"}
    )  # fmt: skip
    members = seeded_members(table, plan, args.seeds)
    if len(members) < args.random:
        raise SystemExit(f"longer_budget: the table holds {len(members)} members with seeds {args.seeds}")
    drawn = sorted(np.random.default_rng(args.draw_seed).choice(members, args.random, replace=False).tolist())
    studies = args.tables / "studies"
    short_home = {
        FOUND: TableDir(studies / f"{args.space}.screen{study['study_seed']}"),
        WIDE: TableDir(studies / f"{args.space}.wide{dim}"),
    }
    long_plan = copy.deepcopy(extended)
    long_plan["config"]["train"]["optim"]["epochs"] *= args.factor
    long_plan["rows"] = []  # every row of the longer budget lives in the work folder
    long_dir = TableDir(studies / f"{args.space}.long{args.factor}x")
    atomic_write_json(long_dir.plan, long_plan)
    data: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for arch in [FOUND, WIDE, *drawn]:
        short = ensure_rows(
            table, short_home.get(arch, table), extended, arch, args.seeds, args.threads, data
        )
        long = ensure_rows(table, long_dir, long_plan, arch, args.seeds, args.threads, data)
        description = next(a["description"] for a in extended["archs"] if a["id"] == arch)
        out[arch] = {"description": description, "table_budget": means(short), "longer": means(long),
                     "longer_per_seed_linear_test": [r["truth"]["linear_test"] for r in long]}  # fmt: skip
        print(json.dumps({arch: out[arch]}), file=sys.stderr, flush=True)
    order = {b: sorted(out, key=lambda a: -out[a][b]["linear_test"]) for b in ("table_budget", "longer")}
    epochs = plan["config"]["train"]["optim"]["epochs"]
    result = {
        "benchmark": "longer_budget",
        "args": {k: str(v) for k, v in vars(args).items()},
        "space": args.space,
        "epochs": {"table_budget": epochs, "longer": epochs * args.factor},
        "find_from_study_seed": study["study_seed"],
        "architectures": out,
        "order_by_linear_test": order,
        "same_order": order["table_budget"] == order["longer"],
        "find_first": {b: order[b][0] == FOUND for b in order},
        "seconds_this_call": round(time.perf_counter() - start, 1),
    }
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
