"""The TensorBoard tracker read back with TensorBoard's own event reader."""

from __future__ import annotations

import json
import math
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from selfnas import tracking
from selfnas.errors import ConfigError
from selfnas.io import read_jsonl
from tests.tracking.helpers import LINES, expected_points, tracked_run


def scalars(folder) -> list[tuple[str, int, float]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return [(tag, e.step, e.value) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]


def assert_same_points(logged, expected) -> None:
    assert len(logged) == len({(t, s) for t, s, _ in logged}), "a metric step was logged twice"
    got = {(t, s): v for t, s, v in logged}
    assert set(got) == {(t, s) for t, s, _ in expected}
    for tag, step, value in expected:
        assert math.isclose(got[tag, step], value, rel_tol=1e-6), (tag, step)


def test_every_metric_line_is_a_scalar_at_its_step_with_the_config_and_eval_table(tmp_path):
    run = tracked_run(tmp_path / "run", "tensorboard")
    run.eval.write_text(json.dumps(LINES[-1]))  # written before its metric line, as a run does
    for line in LINES:
        tracking.append_metrics(run, line)
    tracking.close_all()
    assert read_jsonl(run.metrics) == LINES  # the file is written as before
    assert_same_points(scalars(tmp_path / "run" / "tensorboard"), expected_points(LINES))
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    hparams = acc.PluginTagToContent("hparams")
    assert any(b"optim.batch_size" in content for content in hparams.values())
    table = acc.Tensors("eval/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "| knn | 75.00% | 50.00% |" in table


def test_a_resumed_run_logs_no_step_twice(tmp_path):
    run = tracked_run(tmp_path / "run", "tensorboard")
    for line in LINES[:3]:
        tracking.append_metrics(run, line)
    tracking.close_all()  # the process ends (killed after the step-4 lines)
    for line in LINES[1:]:  # the resumed run replays the lines after its checkpoint at step 2
        tracking.append_metrics(run, line)
    tracking.close_all()
    assert_same_points(scalars(tmp_path / "run" / "tensorboard"), expected_points(LINES))


def test_a_missing_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    run = tracked_run(tmp_path / "run", "tensorboard")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"tensorboard is not installed: pip install 'selfnas\[tracking\]'"):
        tracking.append_metrics(run, LINES[0])
    tracking.close_all()


def test_a_run_without_trackers_writes_no_tracker_files(tmp_path):
    run = tracked_run(tmp_path / "run")
    tracking.append_metrics(run, LINES[0])
    assert sorted(p.name for p in run.path.iterdir()) == [
        ".lock", "config.yaml", "metrics.jsonl", "provenance.json", "status.json"
    ]  # fmt: skip
