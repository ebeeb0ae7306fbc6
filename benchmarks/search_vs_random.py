"""The default search against random search at equal compute, on the ground-truth tables.

``simulate``: NAS-Bench style (no training). For every table and every setting of the
screening search (``selfnas/groundtruth/simulate.py``, ``screen``: score ``--screen`` random members
of the space at initialisation, train the best ``--keep``, optionally through one halving rung),
``--repeats`` studies each report the trials (full-training equivalents, screening counted) to the
table's top 5%, the architecture the label-free score picks among the trained ones, and the
random search of the same space at the same compute (the same score choosing among ``floor`` or
``ceil`` of the cost in random rows, exact over every draw: ``selfnas/groundtruth/baselines.py``). The
gain is the pick's ``linear_test`` minus the control's, mean over repeats. The reference rows
are today's default search (TPE, halving pruner) and random search with the score choosing.
``copula``: the same screened settings on fresh 1,000-architecture spaces drawn from a Gaussian
copula of the table (``selfnas/groundtruth/copula.py``): a 40-row table screened 40 at a time
always offers the table's own favourite of the score; the real search does not. Fitted twice: on
the table's same-run correlations, and with the score's correlation to the truth scaled by what
survives across seeds (a find is judged on rows trained again); ``pick_in_top10`` and
``p_top10_in_4_of_5`` price the issue's "top 10% in 4 of 5 studies" goal.

``run``: real studies of the screened search (``--screen`` candidates, ``--keep`` trials) over a
table's space at its budget, one per ``--study-seeds`` (``TABLES/studies/SPACE.screenN``), each
judged as ``judge`` does; several processes may share ``--out`` (one study seed each).

``judge``: a finished study's find trained with ``--seeds`` at the table's budget (missing rows
trained, resumable) against the three baselines: random search at equal compute (the study's
trial epochs, pruned ones included, plus its screening; exact over the table's random members),
the space's random-architecture median / percentile / RI (``linear_test`` and ``linear_val``, top
10% by ``linear_val``), and ``resnet_small`` widened to the find's feature width.

    python benchmarks/search_vs_random.py simulate --tables benchmarks/tables --repeats 200 \
        --out benchmarks/results_screen_sim.json
    python benchmarks/search_vs_random.py run --spaces cells --study-seeds 0 1 2 3 4 --threads 1
    python benchmarks/search_vs_random.py judge --space cells --folders cells cells.study1 cells.study2
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from selfnas.config import read_config_file
from selfnas.groundtruth.baselines import (
    EQUAL_WIDTH_RULE,
    against_random,
    equal_compute_trainings,
    equal_width_default,
    feature_width,
    in_top,
    random_search_expectation,
    search_epochs,
)
from selfnas.groundtruth.copula import cross_seed_attenuation, draw_space, fit_copula
from selfnas.groundtruth.simulate import (
    STRATEGIES,
    SimTable,
    load_table,
    pick_by_score,
    screen_cost,
)
from selfnas.groundtruth.study_vs_default import FOUND, train_find, truth_means, with_found
from selfnas.groundtruth.study_vs_default import run_study as run_search
from selfnas.groundtruth.table_analysis import score_value, table_epochs
from selfnas.groundtruth.table_picks import REFERENCE
from selfnas.groundtruth.tables import Row, TableDir, ensure_rows, row_config
from selfnas.io import atomic_write_json, read_jsonl
from selfnas.locks import FileLock
from selfnas.models.genotype import load_genotype
from selfnas.nas.scoring import DIRECTION

SCORE = "view_retrieval"
FIDELITIES = ("init", "epoch1", "final")  # the screened search's: screen, halving rung, pick
SPACES = ("cells", "resnet")


def plan_epochs(path: Path) -> float:
    """The table's training epochs from its ``plan.json`` (no default: a wrong budget skews costs)."""
    epochs, source = table_epochs(path)
    if source == "default":
        raise SystemExit(f"search_vs_random: {path.with_suffix('')}/plan.json is missing or unreadable")
    return epochs


def random_members(table: SimTable) -> np.ndarray:
    """Indices of the table's random architectures (the reference ``default`` left out)."""
    return np.array([i for i, a in enumerate(table.archs) if a != "default"])


def control(table: SimTable, budget: float, score: str = SCORE) -> float:
    """Expected linear_test of equal-compute random search over the table's random members."""
    members = random_members(table)
    direction = DIRECTION[score]
    scores = [direction * score_value(table.rows[i], score, "final") for i in members]
    return random_search_expectation(table.test[members], scores, max(1.0, budget))


def run_setting(
    table: SimTable,
    strategy: str,
    repeats: int,
    budget: float,
    draw: Callable[[np.random.Generator], SimTable] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``repeats`` studies of one setting: reach of the top 5%, the score's pick (its share in the
    table's top 10% by ``linear_val``), the control. With ``draw`` each repeat searches a fresh
    space drawn from the table's copula (``selfnas/groundtruth/copula.py``) instead of the table."""
    fn = STRATEGIES[strategy]
    reach, picks, controls, costs, top10 = [], [], [], [], []
    for r in range(repeats):
        rng = np.random.default_rng(r)
        space = table if draw is None else draw(rng)
        trace = [(c, i) for c, i in fn(space, int(math.ceil(budget)), rng, **options) if c <= budget + 1e-9]
        hits = [c for c, i in trace if space.val[i] >= table.threshold]
        reach.append(hits[0] if hits else math.inf)
        pick = pick_by_score(space, trace, budget, SCORE)
        if pick is None:
            continue
        cost = max(c for c, _ in trace)
        costs.append(cost)
        picks.append(float(space.test[pick]))
        controls.append(control(space, cost))
        top10.append(in_top(float(space.val[pick]), table.val))
    reach_arr = np.array(reach)
    reached = reach_arr[np.isfinite(reach_arr)]
    gains = np.array(picks) - np.array(controls)
    return {
        "strategy": strategy,
        "options": options,
        "repeats": repeats,
        "budget": budget,
        "cost_mean": float(np.mean(costs)) if costs else None,
        "trials_to_top5": {
            "restricted_mean": float(np.minimum(reach_arr, budget).mean()),
            "reached": int(reached.size),
            "mean_reached": float(reached.mean()) if reached.size else None,
        },
        "pick_linear_test": float(np.mean(picks)) if picks else None,
        "pick_in_top10": float(np.mean(top10)) if top10 else None,
        # the chance that at least 4 of 5 independent studies land in the top 10%
        "p_top10_in_4_of_5": p_at_least(4, 5, float(np.mean(top10))) if top10 else None,
        "control_linear_test": float(np.mean(controls)) if controls else None,
        "gain_vs_random_search": float(gains.mean()) if gains.size else None,
        "gain_lo_hi": [float(np.percentile(gains, 10)), float(np.percentile(gains, 90))]
        if gains.size
        else None,
    }


def simulate_all(tables: Path, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for space in SPACES:
        path = tables / f"{space}.jsonl"
        # the space's random members only: the hand-crafted default is not a member (cells) and
        # the control never draws it, so no strategy may train it either
        members = [r for r in read_jsonl(path) if r["arch"] != REFERENCE]
        table = load_table(members, epochs=plan_epochs(path))
        each = screen_cost(table, SCORE)
        rows = [
            run_setting(table, "tpe", repeats, 10.0, score=SCORE, eta=2, startup=5, multivariate=True),
            run_setting(table, "random", repeats, 3.0),
            run_setting(table, "random", repeats, 6.0),
        ]
        for screen, keep, eta in itertools.product((10, 20, 30, 40), (1, 2, 3, 4), (None, 2)):
            if eta is not None and keep < 2:
                continue
            rows.append(
                run_setting(table, "screen", repeats, 10.0, screen=screen, keep=keep, score=SCORE, eta=eta)
            )
        for screen, keep in ((20, 2), (40, 2), (40, 4), (80, 2)):  # pools drawn with replacement
            rows.append(
                run_setting(
                    table, "screen", repeats, 10.0, screen=screen, keep=keep, score=SCORE, eta=2, replace=True
                )
            )
        out[space] = {
            "n": table.n,
            "screen_cost": each,
            "top5_threshold": table.threshold,
            "settings": rows,
            "copula": copula_settings(table, members, repeats, each),
        }
    return out


# settings the copula prices: (screen, keep, eta)
COPULA_SETTINGS = ((40, 2, None), (40, 2, 2), (40, 4, 2), (80, 2, 2), (80, 4, 2), (80, 6, 3), (160, 4, 2),
                   (160, 6, 3), (320, 6, 3))  # fmt: skip
COPULA_SPACE = 1000  # architectures in each drawn space


def copula_settings(
    table: SimTable, members: list[dict[str, Any]], repeats: int, each: float
) -> dict[str, Any]:
    """The screened search on fresh spaces drawn from the table's copula, with and without the
    cross-seed attenuation of the score's correlation with the truth (from ``members``, the
    table's rows of every seed)."""
    attenuation = cross_seed_attenuation(members, SCORE, FIDELITIES)
    out: dict[str, Any] = {"space_size": COPULA_SPACE, "attenuation": attenuation}
    for name, factors in (("same_run", None), ("cross_seed", attenuation)):
        cop = fit_copula(table, SCORE, FIDELITIES, attenuation=factors)
        draw = functools.partial(draw_space, cop, COPULA_SPACE)
        out[name] = {
            "corr": np.round(cop.corr, 3).tolist(),
            "columns": list(cop.columns),
            "settings": [
                run_setting(
                    table,
                    "screen",
                    repeats,
                    99.0,
                    draw=draw,
                    screen=sc,
                    keep=k,
                    eta=eta,
                    score=SCORE,
                    cost=each,
                )  # fmt: skip
                for sc, k, eta in COPULA_SETTINGS
            ],
        }
    return out


def p_at_least(k: int, n: int, p: float) -> float:
    """P(at least ``k`` successes in ``n`` independent trials of chance ``p``)."""
    return float(sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1)))


# -- real runs: the default search at a table's budget, its find trained with 3 seeds -------------

WIDE_DEFAULT = "default_equal_width"
# how a study's compute is charged; a results file keeps only studies judged by this rule
CHARGE = "trial epochs (pruned, failed; a retried crash not) + screening at the table's rate"


def per_arch_mean(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Each architecture's ``truth[key]`` averaged over the seeds the table holds for it."""
    values: dict[str, list[float]] = {}
    for r in rows:
        if not r.get("collapsed") and r.get("truth", {}).get(key) is not None:
            values.setdefault(r["arch"], []).append(float(r["truth"][key]))
    return {a: float(np.mean(v)) for a, v in values.items()}


def spent(
    study_dir: Path, trial_epochs: float, seconds_per_epoch: float, screen_each: float
) -> dict[str, float]:
    """The study's training epochs (pruned and failed ones included, ``search_epochs``) plus its
    screening, charged at the table's own rate as in the simulation: ``screen_each`` trainings a
    candidate (the init score's seconds over the training seconds of the same rows, so machine
    load cancels). The screening's wall seconds at the find's seconds per epoch are shown beside
    it: they mix the loads of two moments (a screening on a busy machine, a training on a quiet
    one) and are not charged."""
    trials = read_jsonl(study_dir / "trials.jsonl")
    screen = study_dir / "screen.jsonl"
    screened = read_jsonl(screen) if screen.exists() else []
    screen_s = sum(r.get("seconds") or 0.0 for r in screened)
    epochs = search_epochs(trials, trial_epochs)
    charged = len(screened) * screen_each * trial_epochs
    return {
        "trial_epochs": epochs,
        "screened": len(screened),
        "screen_epochs": charged,
        "screen_seconds": round(screen_s, 1),
        "screen_epochs_at_measured_seconds": screen_s / seconds_per_epoch,
        "total_epochs": epochs + charged,
    }


def run_study(
    tables: Path,
    space: str,
    work_root: Path,
    study_seed: int,
    seeds: list[int],
    threads: int | None,
    screen: int,
    keep: int,
    defer_wide: bool = False,
) -> dict[str, Any]:
    """One real study of the default search over the table's space, its find against the baselines."""
    plan = json.loads((tables / space / "plan.json").read_text(encoding="utf-8"))
    folder = work_root / f"{space}.screen{study_seed}"
    study, search_seconds = run_search(
        plan, folder, keep, threads, study_seed, {"screen": screen, "screen_keep": keep}
    )
    judged = judge(tables, space, folder, study["genotype"], seeds, threads, defer_wide)
    settings = {"screen": screen, "keep": keep, "trials": keep}
    seconds = round(search_seconds, 1)
    return {"study_seed": study_seed, "settings": settings, "search_seconds_this_call": seconds, **judged}


def judge(
    tables: Path,
    space: str,
    folder: Path,
    genotype: Any,
    seeds: list[int],
    threads: int | None,
    defer_wide: bool = False,
) -> dict[str, Any]:
    """A finished study in ``folder`` (its ``search/`` run at the table's budget) against the three
    baselines: its find trained with ``seeds`` at the table's budget (missing rows trained), the
    equal-compute random search, the space's random architectures and the default at equal width
    (with ``defer_wide``, missing widened-default rows are left for a later call: ``None`` here)."""
    work_root = folder.parent
    table = TableDir(tables / space)
    plan = json.loads(table.plan.read_text(encoding="utf-8"))
    found_dim = feature_width(row_config(with_found(plan, genotype), Row(FOUND, 0)).model.model_dump())
    wide_arch = {  # every space: the default widened to the find's feature width
        "id": WIDE_DEFAULT,
        "genotype": None,
        "model": equal_width_default(found_dim),
        "description": f"resnet_small widened to {found_dim} features",
    }
    extended, found, ref, data_box = train_find(table, folder, plan, genotype, seeds, threads, [wide_arch])
    if found_dim == feature_width(row_config(extended, Row(REFERENCE, 0)).model.model_dump()):
        wide = ref  # the default already gives the probe the find's width
    else:  # one folder per width: finds of the same width share the widened default's rows
        wide_dir = TableDir(work_root / f"{space}.wide{found_dim}")
        missing = not all(wide_dir.row(Row(WIDE_DEFAULT, s)).exists() for s in seeds)
        wide = (
            None
            if defer_wide and missing
            else ensure_rows(table, wide_dir, extended, WIDE_DEFAULT, seeds, threads, data_box)
        )
    rows = [json.loads(line) for line in (tables / f"{space}.jsonl").read_text().splitlines() if line]
    members = sorted({r["arch"] for r in rows if r["arch"] != REFERENCE})
    test, val = per_arch_mean(rows, "linear_test"), per_arch_mean(rows, "linear_val")
    seed0 = {r["arch"]: r for r in rows if r["seed"] == 0}
    usable = [a for a in members if a in test and a in seed0]
    score = [DIRECTION[SCORE] * float(seed0[a]["scores"][SCORE]["final"]) for a in usable]
    mean = truth_means({FOUND: found, REFERENCE: ref, WIDE_DEFAULT: wide})
    epochs = float(plan["config"]["train"]["optim"]["epochs"])
    trial_epochs = read_config_file(folder / "search.yaml")["search"]["trial_epochs"]
    if float(trial_epochs) != epochs:
        raise SystemExit(
            f"search_vs_random: {folder} trained trials of {trial_epochs} epochs, the table {epochs}"
        )
    per_epoch = statistics.median(r["seconds"]["train"] for r in found) / epochs
    each = screen_cost(load_table(tables / f"{space}.jsonl", epochs=epochs), SCORE)
    cost = spent(folder / "search", epochs, per_epoch, each)
    budget = equal_compute_trainings(cost["total_epochs"], epochs)
    control = random_search_expectation([test[a] for a in usable], score, max(1.0, budget))
    found_test = mean[FOUND]["linear_test"]
    summary = json.loads((folder / "search" / "study.json").read_text(encoding="utf-8"))
    return {
        "folder": str(folder),
        "charge": CHARGE,
        "seeds": seeds,
        "find": {
            "description": found[0]["description"],
            "genotype": found[0]["genotype"],
            "params": found[0]["params"],
            "flops": found[0]["flops"],
            "feature_width": found_dim,
            **mean[FOUND],
            "per_seed_linear_test": [r["truth"]["linear_test"] for r in found],
        },
        "cost": {**cost, "seconds_per_epoch": round(per_epoch, 1), "full_trainings": budget},
        "trials": summary["trials"],
        "screen": summary.get("screen"),
        "random_search": {
            "linear_test": control,
            "trainings": budget,
            "score": SCORE,
            "rule": "exact expectation over every draw of the table's random members",
        },
        "gain_vs_random_search": found_test - control,
        "random_architectures": {
            "linear_test": against_random(found_test, [test[a] for a in usable]),
            "linear_val": against_random(mean[FOUND]["linear_val"], [val[a] for a in usable]),
            # like with like: the find's seed-0 row among the members' seed-0 rows (most members have
            # one seed, and a 3-seed mean against single seeds would be judged against noisier tops)
            "in_top10_linear_val": in_top(
                float(found[0]["truth"]["linear_val"]),
                [float(seed0[a]["truth"]["linear_val"]) for a in usable],
                0.10,
            ),
            "in_top10_linear_val_mean_vs_member_means": in_top(
                mean[FOUND]["linear_val"], [val[a] for a in usable], 0.10
            ),
        },
        "default": {"params": ref[0]["params"], "flops": ref[0]["flops"], **mean[REFERENCE]},
        "default_equal_width": None  # deferred: rerun without --defer-wide to train its rows
        if wide is None
        else {
            "params": wide[0]["params"],
            "flops": wide[0]["flops"],
            **mean[WIDE_DEFAULT],
            "rule": EQUAL_WIDTH_RULE,
            "same_as_default": wide is ref,
        },
    }


def summarise(studies: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    per_space = {
        sp: float(np.mean([s["gain_vs_random_search"] for s in ss])) for sp, ss in studies.items() if ss
    }
    every = [s["gain_vs_random_search"] for ss in studies.values() for s in ss]
    return {
        "gain_vs_random_search": {
            **per_space,
            "overall": float(np.mean(every)) if every else None,
            "overall_is": "the mean over every study of every space",
        },
        "studies_in_top10": {
            sp: sum(s["random_architectures"]["in_top10_linear_val"] for s in ss)
            for sp, ss in studies.items()
        },
        "studies_count": {sp: len(ss) for sp, ss in studies.items()},
    }


def record(
    out: Path, lock_dir: Path, space: str, study: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Merge one finished study into ``out`` (other studies kept, one of the same space and study
    seed replaced) and rewrite the summary: several ``run`` processes may share the file."""
    with FileLock(lock_dir):
        old = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
        studies: dict[str, list[dict[str, Any]]] = old.get("studies", {})
        kept = [
            s
            for s in studies.get(space, [])
            if s["study_seed"] != study["study_seed"] and s.get("charge") == CHARGE
        ]  # a study judged by an older rule is dropped: rerun its seed to judge it again
        studies[space] = sorted([*kept, study], key=lambda s: s["study_seed"])
        result = {
            "benchmark": "search_vs_random run",
            "args": {k: str(v) for k, v in vars(args).items()},
            **summarise(studies),
            "studies": studies,
        }
        atomic_write_json(out, result)
    return result


def markdown(results: dict[str, Any]) -> str:
    """One row a study: the find (3-seed means, linear test) beside the three baselines."""

    def pct(x: float | None) -> str:
        return "pending" if x is None else f"{100 * x:.2f}"

    lines = [
        "| space | study | find, linear test (val) | equal-compute random search (trainings) | gain "
        "| random median (find's percentile, RI) | top 10% by val | default at equal width | default |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for space, studies in results["studies"].items():
        for s in studies:
            f, r, ra = s["find"], s["random_search"], s["random_architectures"]
            wide = s.get("default_equal_width")
            name = s.get("study_seed", Path(s.get("folder", "?")).name)
            lines.append(
                f"| {space} | {name} | {pct(f['linear_test'])} ({pct(f['linear_val'])}) "
                f"| {pct(r['linear_test'])} ({r['trainings']:.2f}) | {100 * s['gain_vs_random_search']:+.2f} "
                f"| {pct(ra['linear_test']['random_median'])} ({ra['linear_test']['percentile']:.1f}th, "
                f"{ra['linear_test']['ri']:+.2f}%) | {'yes' if ra['in_top10_linear_val'] else 'no'} "
                f"| {pct(wide['linear_test']) if wide else 'pending'} | {pct(s['default']['linear_test'])} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate")
    sim.add_argument("--tables", type=Path, default=Path("benchmarks/tables"))
    sim.add_argument("--repeats", type=int, default=200)
    sim.add_argument("--out", type=Path, default=None)
    real = sub.add_parser("run")
    real.add_argument("--tables", type=Path, default=Path("benchmarks/tables"))
    real.add_argument("--spaces", nargs="+", default=["cells"])
    real.add_argument("--study-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    real.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    real.add_argument("--screen", type=int, default=40)
    real.add_argument("--keep", type=int, default=2)
    real.add_argument("--threads", type=int, default=None)
    real.add_argument("--out", type=Path, default=Path("benchmarks/results_search_vs_random.json"))
    real.add_argument(
        "--defer-wide", action="store_true", help="leave missing widened-default rows for a later run"
    )
    old = sub.add_parser("judge", help="finished studies' finds against the same baselines")
    old.add_argument("--tables", type=Path, default=Path("benchmarks/tables"))
    old.add_argument("--space", default="cells")
    old.add_argument("--folders", nargs="+", default=["cells", "cells.study1", "cells.study2"])
    old.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    old.add_argument("--threads", type=int, default=None)
    old.add_argument("--out", type=Path, default=Path("benchmarks/results_study_baselines.json"))
    show = sub.add_parser("markdown", help="the results file as a RESULTS.md table")
    show.add_argument("files", type=Path, nargs="+")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    if args.command == "markdown":
        for path in args.files:
            print(markdown(json.loads(path.read_text(encoding="utf-8"))))
        return 0
    if args.command == "judge":
        judged = []
        for name in args.folders:
            folder = args.tables / "studies" / name
            genotype = load_genotype(folder / "search" / "genotype.json")
            judged.append(judge(args.tables, args.space, folder, genotype, args.seeds, args.threads))
        result = {
            "benchmark": "search_vs_random judge",
            "args": {k: str(v) for k, v in vars(args).items()},
            **summarise({args.space: judged}),
            "studies": {args.space: judged},
        }
        atomic_write_json(args.out, result)
        json.dump(result, sys.stdout, indent=1)
        return 0
    if args.command == "run":
        for study_seed in args.study_seeds:  # seed by seed across spaces: results land early
            for sp in args.spaces:
                study = run_study(
                    args.tables,
                    sp,
                    args.tables / "studies",
                    study_seed,
                    args.seeds,
                    args.threads,
                    args.screen,
                    args.keep,
                    args.defer_wide,
                )
                result = record(args.out, args.tables / "studies", sp, study, args)
        json.dump(result, sys.stdout, indent=1)
        return 0
    result = {
        "benchmark": "search_vs_random simulate",
        "score": SCORE,
        "spaces": simulate_all(args.tables, args.repeats),
    }
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.out:
        atomic_write_json(args.out, result)
    json.dump(result, sys.stdout, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
