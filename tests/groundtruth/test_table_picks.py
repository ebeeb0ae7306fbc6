"""The label-free pick vs the default on a tiny table (benchmarks/table_picks.py); extra seeds train once."""

from __future__ import annotations

import json
import statistics

from selfnas.groundtruth.table_analysis import pick_by_score
from selfnas.groundtruth.table_picks import capped, compare_space
from selfnas.groundtruth.tables import build_table, build_table_config
from selfnas.io import read_jsonl

from .test_tables import TINY_TABLE


def test_the_pick_and_the_default_are_compared_over_the_seeds_training_only_the_missing_rows(
    tmp_path, single_thread
):
    tables = tmp_path / "tables"
    config = build_table_config({"archs": 2, "seeds": 2, "seeded_archs": 1}, TINY_TABLE)
    # stopped before its last row, default.s1: the comparison builds that one into the table itself
    build_table(config, tables / "heads", export=tables / "heads.jsonl", limit=3)
    rows = read_jsonl(tables / "heads.jsonl")  # default, a01 and a02, seed 0
    picked = pick_by_score(rows, "ssl_loss")["arch"]
    space = compare_space("heads", tables, tables / "picks", ["ssl_loss"], "final", [0, 1], threads=1)
    work = tables / "picks" / "heads" / "rows"
    trained = sorted(p.name for p in work.glob("*.json"))
    # only what the table lacks is trained: the pick's second seed (none when the default is picked)
    assert trained == ([] if picked == "default" else [f"{picked}.s1.json"])
    assert (tables / "heads" / "rows" / "default.s1.json").exists()
    rows = rows + [json.loads((tables / "heads" / "rows" / "default.s1.json").read_text())]
    pick = space["picks"]["ssl_loss"]
    assert pick["arch"] == picked
    extra = [json.loads((work / name).read_text()) for name in trained]
    found = [r for r in rows + extra if r["arch"] == picked and r["seed"] in (0, 1)]
    ref = [r for r in rows if r["arch"] == "default"]
    assert len(found) == 2 and len(ref) == 2
    for key in ("knn_test", "linear_test", "knn_val", "linear_val"):
        want = statistics.mean(r["truth"][key] for r in found) - statistics.mean(r["truth"][key] for r in ref)
        assert abs(pick["gain"][key] - want) < 1e-12
    assert pick["per_seed"]["knn_test"] == [r["truth"]["knn_test"] for r in found]
    # a rerun trains nothing and gives the same answer
    stamps = {p: p.stat().st_mtime_ns for p in work.glob("*.json")}
    again = compare_space("heads", tables, tables / "picks", ["ssl_loss"], "final", [0, 1], threads=1)
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(space))
    assert {p: p.stat().st_mtime_ns for p in work.glob("*.json")} == stamps


def test_a_cap_keeps_only_the_architectures_at_most_as_big_as_the_default():
    rows = [
        {"arch": "default", "seed": 0, "flops": 100.0, "params": 50.0},
        {"arch": "a01", "seed": 0, "flops": 400.0, "params": 40.0},
        {"arch": "a02", "seed": 0, "flops": 100.0, "params": 60.0},
        {"arch": "a03", "seed": 0, "flops": 60.0, "params": 10.0},
    ]
    assert [r["arch"] for r in capped(rows, "none")] == ["default", "a01", "a02", "a03"]
    assert [r["arch"] for r in capped(rows, "flops")] == ["default", "a02", "a03"]
    assert [r["arch"] for r in capped(rows, "params")] == ["default", "a01", "a03"]
