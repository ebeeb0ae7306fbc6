"""The study's best retrained against the default on a tiny cells table (benchmarks/study_vs_default.py)."""

from __future__ import annotations

import json
import shutil

import optuna
import pytest

from selfnas.config import SearchConfig
from selfnas.errors import ConfigError
from selfnas.groundtruth.study_vs_default import compare, search_config
from selfnas.groundtruth.tables import build_table, build_table_config
from selfnas.io import read_jsonl
from selfnas.models.genotype import load_genotype
from selfnas.nas.spaces.optuna_spaces import study_space

from .test_tables import TINY_TABLE

# the heads' tiny table, its space swapped for tiny cells
TINY_CELLS = [
    *(o for o in TINY_TABLE if not o.startswith("table.space_kwargs=")),
    "table.space=cells",
    "table.space_kwargs={width: 4, layers: 3, nodes: 1}",
]


def test_the_studys_best_is_retrained_at_the_tables_budget_and_compared_with_the_tables_default(
    tmp_path, single_thread
):
    tables = tmp_path / "tables"
    config = build_table_config({"archs": 2, "seeds": 2, "seeded_archs": 1}, TINY_CELLS)
    build_table(config, tables / "cells", export=tables / "cells.jsonl", limit=1)  # default.s0 only
    default = read_jsonl(tables / "cells.jsonl")
    assert [(r["arch"], r["seed"]) for r in default] == [("default", 0)]

    def run():
        return json.loads(json.dumps(compare(tables, "cells", tables / "studies", 2, [0], threads=1)))

    result = run()
    work = tables / "studies" / "cells"
    study = json.loads((work / "search" / "study.json").read_text())
    assert study["space"] == "cells" and study["strategy"] == "tpe" and study["counted"] == 2
    # the study's best architecture is the one retrained, at the table's budget, in the work folder
    assert sorted(p.name for p in (work / "rows").glob("*.json")) == ["study.s0.json"]
    found = json.loads((work / "rows" / "study.s0.json").read_text())
    assert found["genotype"] == load_genotype(work / "search" / "genotype.json").to_json()
    assert found["description"] == result["found"]["description"]
    plan = json.loads((tables / "cells" / "plan.json").read_text())
    assert json.loads((work / "plan.json").read_text())["config"] == plan["config"]
    for key in ("knn_test", "linear_test", "knn_val", "linear_val"):
        assert result["gain"][key] == pytest.approx(found["truth"][key] - default[0]["truth"][key])
    assert result["per_seed"]["default"]["knn_test"] == [default[0]["truth"]["knn_test"]]
    # a rerun continues the finished study (no new trial) and trains nothing
    stamps = {p: p.stat().st_mtime_ns for p in (work / "rows").glob("*.json")}
    trials = (work / "search" / "trials.jsonl").read_text()
    again = run()
    assert again["gain"] == result["gain"] and again["found"] == result["found"]
    assert {p: p.stat().st_mtime_ns for p in (work / "rows").glob("*.json")} == stamps
    assert (work / "search" / "trials.jsonl").read_text() == trials
    # a clean clone holds only the committed files of the study: it reruns nothing either
    kept = ("study.json", "genotype.json", "trials.jsonl")
    for path in (work / "search").iterdir():
        if path.name not in kept:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in (work / "runs", work / "locks"):
        shutil.rmtree(path)
    assert run()["gain"] == result["gain"]
    assert {p: p.stat().st_mtime_ns for p in (work / "rows").glob("*.json")} == stamps
    assert sorted(p.name for p in (work / "search").iterdir()) == sorted(kept)


def test_a_table_whose_space_has_no_study_is_refused(tmp_path):
    plan = {"config": build_table_config({}, ["data.name=synthetic"]).model_dump(mode="json")}  # heads
    with pytest.raises(ConfigError, match="no study space"):
        search_config(plan, trials=2, threads=1)


def test_the_study_trains_like_a_table_row_and_takes_its_own_seed():
    config = build_table_config({"sample_seed": 3}, TINY_CELLS)
    plan = {"config": config.model_dump(mode="json")}
    search = search_config(plan, trials=5, threads=1)
    assert search["run"]["seed"] == 3 and search["run"]["threads"] == 1
    assert search["optim"] == config.train.optim.model_dump(mode="json")
    assert search["data"] == config.train.data.model_dump(mode="json")
    assert search["search"] == {"space": "cells", "strategy": "tpe", "trials": 5, "trial_epochs": 4.0,
                                "nodes": 1, "cell_width": 4, "cell_layers": 3}  # fmt: skip
    assert search_config(plan, trials=5, threads=1, seed=7)["run"]["seed"] == 7


def test_a_resnet_tables_grid_becomes_the_searchs_grid_so_every_find_is_a_member_of_the_tables_space():
    grid = {"blocks": [1], "bottleneck_blocks": [1], "groups": [1, 2], "widths": [4]}
    overrides = [
        *(o for o in TINY_TABLE if not o.startswith("table.space_kwargs=")),
        "table.space=resnet-variants",
        "table.space_kwargs={blocks: [1], bottleneck_blocks: [1], groups: [1, 2], widths: [4]}",
    ]
    plan = {"config": build_table_config({}, overrides).model_dump(mode="json")}
    search = search_config(plan, trials=2, threads=1)["search"]
    assert search["space"] == "resnet-variants" and search["space_kwargs"] == grid
    space = study_space(SearchConfig.model_validate(search))
    seen = set()
    for seed in range(20):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        g = space.suggest(trial)
        seen.add((tuple(g.blocks), g.groups, g.width_per_group))
    assert {groups for _, groups, _ in seen} == {1, 2}
    assert all(set(blocks) == {1} and width == 4 for blocks, _, width in seen)
