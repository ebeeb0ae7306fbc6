"""The pipeline's training stages side by side: each process trains as it would alone at its share."""

from __future__ import annotations

import json
import multiprocessing

import pytest
import yaml

from selfnas.config import build_config
from selfnas.errors import SelfnasError
from selfnas.pipeline import run_training_stages, stage_workers
from tests.conftest import TINY

ONE_EPOCH = [*TINY, "optim.epochs=1", "data.train_limit=256"]


def _config(*extra: str):
    return build_config(None, [*ONE_EPOCH, *extra])


@pytest.mark.parametrize(
    ("threads", "stages", "expected"),
    [(None, 3, (1, None)), (1, 3, (1, 1)), (2, 3, (2, 1)), (4, 3, (3, 1)), (6, 3, (3, 2)), (8, 1, (1, 8))],
)
def test_the_threads_are_shared_by_the_stage_count_alone(threads, stages, expected):
    """The share depends on run.threads and how many stages the job has, never on how many are
    left: a resumed pipeline trains each stage with the threads an uninterrupted one used."""
    assert stage_workers(_config(f"run.threads={'null' if threads is None else threads}"), stages) == expected


def _evals(out, stages):
    result = {}
    for stage in stages:
        evaluation = json.loads((out / stage / "eval.json").read_text())
        evaluation.pop("seconds")
        result[stage] = evaluation
    return result


def test_stages_side_by_side_train_exactly_as_each_alone_at_one_thread(tmp_path):
    two = {"a": _config("run.threads=2", "run.seed=1"), "b": _config("run.threads=2", "run.seed=2")}
    alone = {stage: cfg.model_copy(update={"run": cfg.run.model_copy(update={"threads": 1})})
             for stage, cfg in two.items()}  # fmt: skip
    for out, configs in ((tmp_path / "side", two), (tmp_path / "alone", alone)):
        out.mkdir()
        run_training_stages(out, configs, "cpu", quiet=True)
    for stage in two:  # each side-by-side process trained at one thread, and says so
        assert yaml.safe_load((tmp_path / "side" / stage / "config.yaml").read_text())["run"]["threads"] == 1
    assert _evals(tmp_path / "side", two) == _evals(tmp_path / "alone", alone)
    costs = json.loads((tmp_path / "side" / "costs.json").read_text())
    assert set(costs) == {"a", "b"} and all(seconds > 0 for seconds in costs.values())
    # a second call finds both stages done and trains nothing
    before = {s: (tmp_path / "side" / s / "model.safetensors").stat().st_mtime_ns for s in two}
    run_training_stages(tmp_path / "side", two, "cpu", quiet=True)
    assert {s: (tmp_path / "side" / s / "model.safetensors").stat().st_mtime_ns for s in two} == before


def test_a_failing_stage_stops_the_others_with_one_line_naming_it(tmp_path):
    configs = {
        "good": _config("run.threads=2", "optim.epochs=20"),  # would run for a while
        "bad": _config("run.threads=2", "data.name=folder", f"data.root={tmp_path / 'nowhere'}"),
    }
    with pytest.raises(SelfnasError) as caught:
        run_training_stages(tmp_path, configs, "cpu", quiet=True)
    message = str(caught.value)
    assert message.startswith("bad: ") and "\n" not in message
    assert multiprocessing.active_children() == []  # the other worker was stopped, not left training
    assert not (tmp_path / "good" / "eval.json").exists()
