"""Does `selfnas search`'s default study find a backbone better than a table's hand-crafted default?

A ground-truth table fixes a space, a training budget and a data split, and holds the hand-crafted
``default`` trained with several seeds. :func:`compare` runs the default study (``selfnas search
--strategy tpe``: TPE, the halving pruner, the default label-free score; through the command line,
in its own process) over the table's space, with the table's training config and a trial as long
as a table row, then trains the study's best architecture with the given seeds at the table's
budget (same plan, same data split, the table's row builder: resumable and kill-safe) and compares
its kNN and linear probe on the held-out test images with the default's rows of the table, mean
over the seeds. No label is read by the search; val is shown beside test; test decides nothing.
Rerunning continues the study (``--resume``) and trains only missing rows.
``benchmarks/study_vs_default.py`` is its command line.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from selfnas.errors import ConfigError, RunDirError
from selfnas.groundtruth.table_picks import REFERENCE, TRUTH
from selfnas.groundtruth.table_spaces import table_space
from selfnas.groundtruth.tables import TableConfig, TableDir, ensure_rows
from selfnas.io import atomic_write_json, atomic_write_text
from selfnas.models.genotype import load_genotype

FOUND = "study"
SEARCH_SPACE = {"cells": "cells", "resnet-variants": "resnet-variants"}
RULES = {
    "found": "the best trial of selfnas search's default study (TPE, halving pruner, default "
    "label-free score) over the table's space at the table's training config",
    "gain": "found minus default, mean over the seeds, same budget and split; test never chooses",
}


def search_config(
    plan: dict[str, Any],
    trials: int,
    threads: int | None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of ``selfnas search`` for the table's space: the table's training config (its data,
    method and budget; a trial trains as long as a row), and the study's defaults otherwise."""
    table = TableConfig.model_validate(plan["config"])
    if table.space not in SEARCH_SPACE:
        raise ConfigError(f"a {table.space} table has no study space; use cells or resnet-variants")
    train = table.train.model_dump(mode="json")
    kwargs = table.space_kwargs
    search = {"space": SEARCH_SPACE[table.space], "strategy": "tpe", "trials": trials,
              "trial_epochs": table.train.optim.epochs}  # fmt: skip
    if table.space == "cells":
        search |= {"nodes": kwargs.get("nodes", 4), "cell_width": kwargs.get("width", 8),
                   "cell_layers": kwargs.get("layers", 5)}  # fmt: skip
    elif kwargs:  # the search samples the table's grid, so its finds are members of the table's space
        search["space_kwargs"] = dict(kwargs)
    train["search"] = search | (extra or {})
    train["run"] |= {"seed": table.sample_seed if seed is None else seed, "threads": threads}
    return train


def finished(out: Path, trials: int) -> bool:
    """Whether the study in ``out`` has written its best genotype after ``trials`` counted trials."""
    try:
        counted = json.loads((out / "study.json").read_text(encoding="utf-8"))["counted"]
    except (OSError, ValueError, KeyError):
        return False
    return counted >= trials and (out / "genotype.json").exists()


def run_study(
    plan: dict[str, Any],
    folder: Path,
    trials: int,
    threads: int | None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], float]:
    """Run (or continue) the study in ``folder/search`` through the CLI; its best genotype and seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "search.yaml"
    atomic_write_text(
        config, yaml.safe_dump(search_config(plan, trials, threads, seed, extra), sort_keys=False)
    )
    out = folder / "search"
    cfg = yaml.safe_load(config.read_text())["search"]
    cmd = [sys.executable, "-m", "selfnas.cli", "search", "-c", str(config), "--out", str(out),
           "--space", cfg["space"], "--strategy", "tpe", "--trials", str(trials),
           "--data", plan["config"]["train"]["data"]["name"]]  # fmt: skip
    start = time.perf_counter()
    if not finished(out, trials):  # a finished study's files are committed: a clean clone reruns nothing
        if (out / "config.yaml").exists():
            cmd.append("--resume")
        subprocess.run(cmd, check=True, env=os.environ.copy())
    seconds = time.perf_counter() - start
    summary = json.loads((out / "study.json").read_text(encoding="utf-8"))
    return {"genotype": load_genotype(out / "genotype.json"), "summary": summary}, seconds


def with_found(plan: dict[str, Any], genotype: Any) -> dict[str, Any]:
    """The table's plan with the study's architecture added as ``study`` (its rows unchanged)."""
    config = TableConfig.model_validate(plan["config"])
    space = table_space(config.space, config.train, plan["in_channels"], config.space_kwargs)
    archs = [a for a in plan["archs"] if a["id"] != FOUND]
    archs.append({"id": FOUND, "genotype": genotype.to_json(), "description": space.describe(genotype)})
    return {**plan, "archs": archs}


def train_find(
    table: TableDir,
    folder: Path,
    plan: dict[str, Any],
    genotype: Any,
    seeds: list[int],
    threads: int | None,
    extra_archs: Sequence[dict[str, Any]] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The find's rows and the table default's, with ``seeds`` at the table's budget (missing ones
    trained, resumable) in ``folder``: the table's plan extended with the find (and
    ``extra_archs``), its rows, the default's rows, and the loaded data for more rows. A folder
    holding rows of another find is refused."""
    extended = with_found(plan, genotype)
    extended["archs"].extend(extra_archs)
    work = TableDir(folder)
    atomic_write_json(work.plan, {**extended, "rows": [[FOUND, s] for s in seeds]})
    data_box: dict[str, Any] = {}
    found = ensure_rows(table, work, extended, FOUND, seeds, threads, data_box)
    want = next(a["genotype"] for a in extended["archs"] if a["id"] == FOUND)
    if any(r["genotype"] != want for r in found):
        raise RunDirError(f"{work.rows} holds rows of another study's find; move it away")
    ref = ensure_rows(table, work, extended, REFERENCE, seeds, threads, data_box)
    return extended, found, ref, data_box


def truth_means(rows: dict[str, list[dict[str, Any]] | None]) -> dict[str, dict[str, float]]:
    """Each named group's :data:`TRUTH` averaged over its rows (seeds); a ``None`` group left out."""
    return {
        name: {k: statistics.mean(r["truth"][k] for r in rs) for k in TRUTH}
        for name, rs in rows.items()
        if rs is not None
    }


def compare(
    tables: Path,
    space: str,
    work_root: Path,
    trials: int,
    seeds: list[int],
    threads: int | None,
    study_seed: int | None = None,
) -> dict[str, Any]:
    table = TableDir(tables / space)
    plan = json.loads(table.plan.read_text(encoding="utf-8"))
    folder = work_root / (space if study_seed is None else f"{space}.study{study_seed}")
    study, search_seconds = run_study(plan, folder, trials, threads, study_seed)
    _, found, ref, _ = train_find(table, folder, plan, study["genotype"], seeds, threads)
    mean = truth_means({REFERENCE: ref, FOUND: found})
    summary = study["summary"]
    return {
        "found": {
            "description": found[0]["description"],
            "params": found[0]["params"],
            "flops": found[0]["flops"],
            **mean[FOUND],
        },  # fmt: skip
        REFERENCE: {"params": ref[0]["params"], "flops": ref[0]["flops"], **mean[REFERENCE]},
        "gain": {k: mean[FOUND][k] - mean[REFERENCE][k] for k in TRUTH},
        "per_seed": {
            name: {k: [r["truth"][k] for r in rs] for k in ("knn_test", "linear_test")}
            for name, rs in ((FOUND, found), (REFERENCE, ref))
        },  # fmt: skip
        "search": {
            "seconds_this_call": round(search_seconds, 1),
            "trials": summary["trials"],
            "score": summary["score"],
            "best_trial": summary["best_trial"],
            "correlations": summary["correlations"],
        },  # fmt: skip
    }
