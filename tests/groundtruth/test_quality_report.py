"""The score-quality report of a folder of tables (what benchmarks/score_quality.py writes and prints)."""

from __future__ import annotations

import json

import pytest

from selfnas.groundtruth.quality_report import measure_score_quality
from selfnas.groundtruth.table_analysis import compact_json
from selfnas.io import write_jsonl

from .test_table_analysis import LINEAR, entry, make_row


def _strict(text):
    def refuse(name):
        raise AssertionError(f"{name} in strict JSON")

    return json.loads(text, parse_constant=refuse)


def test_the_report_writes_results_and_a_figure_for_full_partial_and_missing_spaces(tmp_path):
    folder = tmp_path / "tables"
    rows = [make_row(f"a{i}", s, y, {"rankme": y, "ssl_loss": {"init": -y, "final": 1.0}})
            for s in (0, 1) for i, y in enumerate(LINEAR)]  # fmt: skip
    write_jsonl(folder / "cells.jsonl", rows)
    write_jsonl(folder / "heads.jsonl", rows[:1])  # a table just started: one row
    out, figure = tmp_path / "res" / "sq.json", tmp_path / "fig" / "sq.png"
    results, shown = measure_score_quality(folder, out, figure, resamples=50)
    assert list(results["spaces"]) == ["heads", "cells"]  # known spaces first; resnet absent
    written = _strict(out.read_text())
    assert written == _strict(json.dumps(results))
    cells = written["spaces"]["cells"]
    assert cells["archs"] == 8 and cells["noise_ceiling"]["linear_val"]["spearman"] == pytest.approx(1.0)
    assert entry(cells["scores"], "rankme")["linear_val"]["spearman"] == pytest.approx(1.0)
    assert entry(cells["scores"], "ssl_loss", "init")["linear_val"]["spearman"] == pytest.approx(1.0)
    assert entry(cells["scores"], "ssl_loss")["linear_val"]["spearman"] is None  # constant: null
    assert written["spaces"]["heads"]["seed0_usable"] == 1
    assert entry(written["spaces"]["heads"]["scores"], "rankme")["linear_val"]["n"] == 1
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = _strict(compact_json(shown))  # what the script prints: strict JSON too
    summary = printed["spaces"]["cells"]["linear_val_spearman [rho, lo, hi, n, seconds]"]
    assert summary["rankme@final"][:4] == [1.0, 1.0, 1.0, 8]
    # an empty folder: still a JSON and a figure
    empty, _ = measure_score_quality(tmp_path / "none", out, figure, resamples=10)
    assert empty["spaces"] == {} and _strict(out.read_text())["spaces"] == {} and figure.exists()


def test_an_epoch_costs_the_training_seconds_over_the_epochs_each_tables_plan_trained(tmp_path):
    folder = tmp_path / "tables"
    rows = [make_row(f"a{i}", 0, y, {"rankme": y}, train=120.0) for i, y in enumerate(LINEAR)]
    write_jsonl(folder / "cells.jsonl", rows)
    write_jsonl(folder / "heads.jsonl", rows)
    (folder / "cells").mkdir()
    (folder / "cells" / "plan.json").write_text(json.dumps({"config": {"train": {"optim": {"epochs": 4}}}}))
    out, figure = tmp_path / "sq.json", tmp_path / "sq.png"
    results, _ = measure_score_quality(folder, out, figure, resamples=10)
    cells, heads = results["spaces"]["cells"]["cost"], results["spaces"]["heads"]["cost"]
    assert (cells["epochs"], cells["epochs_from"]) == (4.0, str(folder / "cells" / "plan.json"))
    assert cells["epoch_seconds"] == pytest.approx(30.0)
    assert (heads["epochs"], heads["epochs_from"]) == (6.0, "default")  # no plan: the tables' default
    assert heads["epoch_seconds"] == pytest.approx(20.0)
    forced, _ = measure_score_quality(folder, out, figure, epochs=2, resamples=10)
    assert forced["spaces"]["cells"]["cost"]["epoch_seconds"] == pytest.approx(60.0)
