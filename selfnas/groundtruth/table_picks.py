"""The label-free pick of a ground-truth table, retrained with more seeds against the default.

For each score, :func:`compare_space` takes the architecture that score ranks first at a fidelity
among the table's seed-0 rows (no label is read: :func:`~selfnas.groundtruth.table_analysis.pick_by_score`),
optionally among those no bigger than the default (a FLOPs or params cap), trains it and the
default with every seed the table does not hold yet (same plan, same budget, same data split; a
row of the table's own plan is built into the table, under its row lock; the others go to a work
folder, resumable and kill-safe like the table) and compares their kNN and linear probe on the
held-out test images, mean over the seeds. Val is shown beside test; test decides nothing.
``benchmarks/table_picks.py`` is its command line.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from selfnas.groundtruth.table_analysis import pick_by_score, read_table
from selfnas.groundtruth.tables import DEFAULT_ARCH, Row, TableDir, ensure_rows
from selfnas.io import atomic_write_json

TRUTH = ("knn_val", "linear_val", "knn_test", "linear_test")
REFERENCE = DEFAULT_ARCH
RULES = {
    "pick": "the architecture a label-free score ranks first among the table's seed-0 rows "
    "(with a cap: among those with at most the default's FLOPs or params, as search.max_flops)",
    "gain": "pick minus default, mean over the seeds; test is reported, never used to choose",
}


def side_plan(plan: dict[str, Any], rows: list[Row]) -> dict[str, Any]:
    """``plan`` with only ``rows`` to build (its config and architectures unchanged)."""
    return {**plan, "rows": [[r.arch, r.seed] for r in rows]}


def mean_truth(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.mean(r["truth"][k] for r in rows) for k in TRUTH}


def capped(rows: list[dict[str, Any]], cap: str) -> list[dict[str, Any]]:
    """The rows a search with ``cap`` (``none``, ``flops`` or ``params``: at most the default's) may pick."""
    if cap == "none":
        return rows
    limit = next(r[cap] for r in rows if r["arch"] == REFERENCE and r["seed"] == 0)
    return [r for r in rows if r[cap] <= limit]


def compare_space(
    space: str,
    tables: Path,
    work_root: Path,
    scores: list[str],
    fidelity: str,
    seeds: list[int],
    threads: int | None,
    caps: tuple[str, ...] = ("none",),
) -> dict[str, Any]:
    """The picks of each score (and cap) on the table ``tables/<space>.jsonl``, each against the
    default over ``seeds``; the rows the table lacks train in ``work_root/<space>``."""
    table_rows = read_table(tables / f"{space}.jsonl")
    plan = json.loads((tables / space / "plan.json").read_text(encoding="utf-8"))
    picks = {
        score if cap == "none" else f"{score}, {cap} cap": pick_by_score(
            capped(table_rows, cap), score, fidelity
        )["arch"]
        for cap in caps
        for score in scores
    }
    needed = sorted({a for a in [REFERENCE, *picks.values()]})
    work = TableDir(work_root / space)
    work.path.mkdir(parents=True, exist_ok=True)
    rows = [Row(a, s) for a in needed for s in seeds]
    atomic_write_json(work.plan, side_plan(plan, rows))
    data_box: dict[str, Any] = {}
    table = TableDir(tables / space)
    by_arch = {a: ensure_rows(table, work, plan, a, seeds, threads, data_box) for a in needed}
    ref = mean_truth(by_arch[REFERENCE])
    out: dict[str, Any] = {
        "archs": len({r["arch"] for r in table_rows}),
        "fidelity": fidelity,
        REFERENCE: {
            **ref,
            "params": by_arch[REFERENCE][0]["params"],
            "flops": by_arch[REFERENCE][0]["flops"],
        },
        "picks": {},
    }
    for score, arch in picks.items():
        found = mean_truth(by_arch[arch])
        first = by_arch[arch][0]
        out["picks"][score] = {
            "arch": arch,
            "description": first.get("description"),
            "params": first["params"],
            "flops": first["flops"],
            **found,
            "gain": {k: found[k] - ref[k] for k in TRUTH},
            "per_seed": {k: [r["truth"][k] for r in by_arch[arch]] for k in ("knn_test", "linear_test")},
            "default_per_seed": {
                k: [r["truth"][k] for r in by_arch[REFERENCE]] for k in ("knn_test", "linear_test")
            },
        }
    return out
