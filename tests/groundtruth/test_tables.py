"""Ground-truth tables on the synthetic data: rows, fidelities, resume, reruns, refusals."""

from __future__ import annotations

import json
import math

import pytest

from selfnas.errors import ConfigError, RunDirError
from selfnas.groundtruth.tables import FIDELITIES, TableDir, build_table, build_table_config
from selfnas.io import read_jsonl

TINY_TABLE = [
    "data.name=synthetic",
    "data.train_limit=null",
    "model.backbone_kwargs={width: 8, depths: [1, 1]}",
    "method.proj_hidden=32",
    "method.proj_out=16",
    "method.pred_hidden=8",
    "optim.batch_size=64",
    "optim.epochs=4",
    "run.device=cpu",
    "run.threads=1",
    "table.score_images=96",
    "table.space_kwargs={projector_layers: 2, predictor_layers: 1}",
]


def tiny(**options):
    return build_table_config({"archs": 2, "seeds": 2, "seeded_archs": 1, **options}, TINY_TABLE)


def test_a_tiny_head_table_has_every_row_score_and_truth(tmp_path, single_thread):
    result = build_table(tiny(), tmp_path / "t", export=tmp_path / "heads.jsonl")
    assert result == {
        "rows": 4, "finished": 4, "built": 4, "failed": [], "export": str(tmp_path / "heads.jsonl"),
    }  # fmt: skip
    rows = read_jsonl(tmp_path / "heads.jsonl")
    assert [(r["arch"], r["seed"]) for r in rows] == [("default", 0), ("a01", 0), ("a02", 0), ("default", 1)]
    assert rows[0]["genotype"] is None and rows[1]["genotype"]["space"] == "heads"
    assert rows[1]["genotype"] != rows[2]["genotype"]
    for row in rows:
        assert set(row["truth"]) == {"knn_val", "knn_test", "linear_val", "linear_test"}
        assert all(0.0 <= v <= 1.0 for v in row["truth"].values())
        assert row["params"] > 0 and row["flops"] > 0 and isinstance(row["collapsed"], bool)
        for name in ("ssl_loss", "rankme", "rankme_normalized", "lidar", "view_retrieval", "alpha_req"):
            assert set(row["scores"][name]) == set(FIDELITIES), name
        for name in ("naswot", "synflow", "grad_norm"):
            assert set(row["scores"][name]) == {"init"}, name
    # the fidelities are different moments of one run: the loss moves as training goes on
    loss = rows[0]["scores"]["ssl_loss"]
    assert len({round(loss[f], 6) for f in FIDELITIES}) == len(FIDELITIES)
    # two seeds of one architecture: same genotype, different training
    assert rows[3]["genotype"] == rows[0]["genotype"] and rows[3]["scores"] != rows[0]["scores"]
    # the hand-crafted heads and a sampled head differ in size
    assert rows[0]["params"] != rows[1]["params"]


def test_a_finished_table_is_not_rebuilt_and_a_stopped_one_resumes(tmp_path, single_thread):
    out, export = tmp_path / "t", tmp_path / "t.jsonl"
    first = build_table(tiny(), out, export=export, limit=1)
    assert first["built"] == 1 and first["finished"] == 1 and len(read_jsonl(export)) == 1
    table = TableDir(out)
    done = sorted(table.rows.glob("*.json"))
    stamp = {p: p.stat().st_mtime_ns for p in done}
    second = build_table(tiny(), out, export=export)
    assert second["built"] == 3 and second["finished"] == 4
    assert all(p.stat().st_mtime_ns == stamp[p] for p in done)  # the finished row was not redone
    text = export.read_text()
    third = build_table(tiny(), out, export=export)
    assert third["built"] == 0 and export.read_text() == text


def test_a_killed_row_resumes_from_its_checkpoint_to_the_same_row(tmp_path, single_thread):
    """A row killed mid-training continues from its checkpoint; its scores and truth equal an
    uninterrupted build (training and measuring are pure functions of the seed)."""
    reference = build_table(tiny(archs=1, seeds=1), tmp_path / "ref", limit=1)
    assert reference["built"] == 1
    out = tmp_path / "killed"
    config = tiny(archs=1, seeds=1)
    import selfnas.groundtruth.tables as tables

    calls = {"n": 0}
    real = tables.TableTrainer.before_weight_step

    def dying(self, step, epoch):
        real(self, step, epoch)
        calls["n"] += 1
        if step == 12:
            raise KeyboardInterrupt  # stands in for a kill after the checkpoint at the end of epoch 1

    monkey = pytest.MonkeyPatch()
    monkey.setattr(tables.TableTrainer, "before_weight_step", dying)
    with pytest.raises(KeyboardInterrupt):
        build_table(config.model_copy(deep=True), out, limit=1)
    monkey.undo()
    assert (
        not any(TableDir(out).rows.glob("*.json"))
        and TableDir(out).run(tables.Row("default", 0)).checkpoint.exists()
    )
    build_table(config, out, limit=1)
    ref = json.loads((tmp_path / "ref" / "rows" / "default.s0.json").read_text())
    got = json.loads((out / "rows" / "default.s0.json").read_text())
    for key in ("scores", "truth", "params", "flops", "collapsed"):
        assert got[key] == ref[key], key


def test_other_settings_on_a_table_are_refused(tmp_path, single_thread):
    out = tmp_path / "t"
    build_table(tiny(archs=1, seeds=1), out, limit=0)
    with pytest.raises(RunDirError, match="other settings"):
        build_table(tiny(archs=2, seeds=1), out, limit=0)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "photo.png").write_bytes(b"x")
    with pytest.raises(RunDirError, match="not a table"):
        build_table(tiny(), tmp_path / "folder")


def test_bad_table_configs_are_one_line_errors():
    with pytest.raises(ConfigError, match="at least 4"):
        build_table_config({}, [*TINY_TABLE, "optim.epochs=2"])
    with pytest.raises(ConfigError, match="invalid table config"):
        build_table_config({"space": "nope"}, TINY_TABLE)
    with pytest.raises(ConfigError, match="invalid table config"):
        build_table_config({"archs": 0}, TINY_TABLE)


def test_cell_and_resnet_tables_sample_their_spaces(tmp_path, single_thread):
    cells = build_table_config(
        {"space": "cells", "archs": 1, "seeds": 1},
        [*TINY_TABLE[:-1], "table.space_kwargs={width: 4, layers: 3, nodes: 2}"],
    )
    row = build_table(cells, tmp_path / "cells")
    assert row["finished"] == 2
    rows = read_jsonl(tmp_path / "cells" / "table.jsonl")
    assert rows[1]["genotype"]["space"] == "cells" and not math.isnan(rows[1]["truth"]["linear_val"])
    resnet = build_table_config(
        {"space": "resnet-variants", "archs": 1, "seeds": 1},
        [*TINY_TABLE[:-1], "table.space_kwargs={widths: [2], groups: [1]}"],
    )
    assert build_table(resnet, tmp_path / "resnet", limit=0)["rows"] == 2
    plan = json.loads((tmp_path / "resnet" / "plan.json").read_text())
    assert plan["archs"][1]["genotype"]["space"] == "resnet-variants"


@pytest.mark.slow
def test_kill_9_mid_row_then_rerun_gives_the_rows_of_an_uninterrupted_build(tmp_path):
    """A real ``selfnas table`` process killed with SIGKILL after its first checkpoint: the rerun
    keeps nothing half-written, redoes no finished row and ends with the reference's rows."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO, set_args

    args = [
        "table",
        "--archs",
        "1",
        "--seeds",
        "1",
        "--quiet",
        *set_args([*TINY_TABLE, "run.checkpoint_every=2"]),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")

    def cli(out, **kwargs):
        cmd = [sys.executable, "-m", "selfnas.cli", *args, "--out", str(out)]
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs
        )

    assert cli(tmp_path / "ref").wait(timeout=600) == 0
    out = tmp_path / "killed"
    proc = cli(out)
    checkpoint = out / "runs" / "default.s0" / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (out / "rows" / "a01.s0.json").exists()  # killed before the second row
    assert cli(out).wait(timeout=600) == 0
    for row in ("default.s0", "a01.s0"):
        ref = json.loads((tmp_path / "ref" / "rows" / f"{row}.json").read_text())
        got = json.loads((out / "rows" / f"{row}.json").read_text())
        for key in ("scores", "truth", "params", "flops", "collapsed", "genotype"):
            assert got[key] == ref[key], (row, key)
    assert (out / "table.jsonl").read_text().count("\n") == 2
