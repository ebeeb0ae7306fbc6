"""Price averaging the init score over several initialisations, before building it (issue 32).

The init score's seed noise is as large as its spread between architectures (the tables' 9
architectures trained with 3 seeds). Averaging it over ``k`` initialisations raises its
reliability by Spearman-Brown, ``rel_k = k rel / (1 + (k - 1) rel)``, so its correlation with
the truth by ``sqrt(rel_k / rel)`` (at most ``sqrt(rel_k)``; its correlation with the other
fidelities, which share one training run, is left as measured). This script raises the init
column of each table's cross-seed copula (``selfnas/groundtruth/copula.py``) that way and runs the
screened search on fresh drawn spaces as ``search_vs_random.py simulate`` does, charging ``k``
screenings per candidate.

    python benchmarks/copula_inits.py --repeats 200 --out benchmarks/results_copula_inits.json
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import math
import sys
from pathlib import Path

import numpy as np
from search_vs_random import FIDELITIES, SCORE, plan_epochs, run_setting

from selfnas.groundtruth.copula import cross_seed_attenuation, draw_space, fit_copula, nearest_correlation
from selfnas.groundtruth.simulate import load_table, screen_cost
from selfnas.groundtruth.table_analysis import is_collapsed, score_value
from selfnas.groundtruth.table_picks import REFERENCE
from selfnas.io import atomic_write_json, read_jsonl

SETTINGS = ((20, 2, 2), (30, 2, 2), (40, 2, 2), (80, 4, 2))  # screen, keep, eta


def init_reliability(rows: list[dict]) -> float:
    """Share of the init score's variance that is the architecture's (one-way ICC over 3 seeds)."""
    by_arch: dict[str, list[float]] = collections.defaultdict(list)
    for row in rows:
        if not is_collapsed(row):
            by_arch[row["arch"]].append(score_value(row, SCORE, "init"))
    v = np.array([x[:3] for x in by_arch.values() if len(x) >= 3])
    within = v.var(axis=1, ddof=1).mean()
    between = v.mean(axis=1).var(ddof=1) - within / 3
    return float(between / (between + within))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", type=Path, default=Path("benchmarks/tables"))
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--inits", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out: dict = {"benchmark": "copula_inits", "score": SCORE, "spaces": {}}
    for space in ("cells", "resnet"):
        path = args.tables / f"{space}.jsonl"
        rows = [r for r in read_jsonl(path) if r["arch"] != REFERENCE]
        table = load_table(rows, epochs=plan_epochs(path))
        each = screen_cost(table, SCORE)
        attenuation = cross_seed_attenuation(rows, SCORE, FIDELITIES)
        base = fit_copula(table, SCORE, FIDELITIES, attenuation=attenuation)
        rel = init_reliability(rows)
        if not 0 < rel < 1:
            raise SystemExit(f"copula_inits: {space}: init reliability {rel:.2f} is outside (0, 1)")
        truth = slice(len(FIDELITIES), None)  # the linear_val and linear_test columns
        per_k = []
        for k in args.inits:
            rel_k = k * rel / (1 + (k - 1) * rel)
            factor = math.sqrt(rel_k / rel)
            corr = base.corr.copy()
            # only the correlation with the truth (of a run trained again) gains: the other
            # fidelities share the one training run the averaged score is no longer tied to, so
            # theirs is left as measured (conservative); a k-average can correlate with anything
            # at most sqrt(rel_k)
            raised = np.minimum(corr[0, truth] * factor, 0.999 * math.sqrt(rel_k))
            corr[0, truth] = corr[truth, 0] = np.maximum(corr[0, truth], raised)
            cop = dataclasses.replace(base, corr=nearest_correlation(corr))
            draw = functools.partial(draw_space, cop, 1000)
            settings = [
                run_setting(
                    table,
                    "screen",
                    args.repeats,
                    99.0,
                    draw=draw,
                    screen=sc,
                    keep=kp,
                    eta=eta,
                    score=SCORE,
                    cost=each * k,
                )  # fmt: skip
                for sc, kp, eta in SETTINGS
            ]
            corr_truth = float(cop.corr[0, len(FIDELITIES)])
            per_k.append({"inits": k, "init_truth_corr": corr_truth, "settings": settings})
        out["spaces"][space] = {"init_reliability": rel, "by_inits": per_k}
    if args.out:
        atomic_write_json(args.out, out)
    json.dump(out, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
