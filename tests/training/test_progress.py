"""What the user sees while a run trains: the count moves every step, the kNN monitor shows its
phases, quiet mode prints a status line after a long silence and no bar."""

from __future__ import annotations

import pytest

from selfnas.config import build_config
from selfnas.rundir import RunDir
from selfnas.training import loop as loop_mod
from selfnas.training import progress as progress_mod
from selfnas.training.progress import TrainProgress
from selfnas.training.trainer import Trainer


class Recorder(TrainProgress):
    """A TrainProgress that keeps every update and phase report it is given."""

    made: list[Recorder] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.updates: list[tuple[int, dict]] = []
        self.phases: list[tuple[str, int, int]] = []
        Recorder.made.append(self)

    def update(self, step, **info) -> None:
        self.updates.append((step, info))
        super().update(step, **info)

    def __call__(self, phase, done, total) -> None:
        self.phases.append((phase, done, total))
        super().__call__(phase, done, total)


@pytest.fixture
def recorded(monkeypatch):
    Recorder.made = []
    monkeypatch.setattr(loop_mod, "TrainProgress", Recorder)
    return Recorder.made


def _fit(tmp_path, overrides):
    trainer = Trainer(build_config(overrides=overrides), RunDir.prepare(tmp_path / "run"), quiet=True)
    trainer.fit()
    return trainer


def test_the_count_moves_every_step_between_metric_lines(tmp_path, tiny_overrides, recorded):
    """log_every beyond the run: the loss text comes only at the epoch ends, the count every step."""
    trainer = _fit(tmp_path, [*tiny_overrides, "run.log_every=1000", "run.knn_every=0"])
    (bar,) = recorded
    steps = [step for step, _ in bar.updates]
    assert steps == list(range(1, trainer.plan.total_steps + 1))
    with_text = [step for step, info in bar.updates if info]
    assert with_text == [trainer.plan.steps_per_epoch, trainer.plan.total_steps]  # epoch ends only


def test_the_knn_monitor_shows_its_phases(tmp_path, tiny_overrides, recorded):
    _fit(tmp_path, [*tiny_overrides, "optim.epochs=1"])
    (bar,) = recorded
    names = list(dict.fromkeys(phase for phase, _, _ in bar.phases))
    assert names == ["kNN monitor: features train", "kNN monitor: features val", "kNN monitor: kNN val"]
    for name in names:
        done = [(d, t) for p, d, t in bar.phases if p == name]
        assert done[0][0] == 0 and done[-1][0] == done[-1][1] > 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quiet_mode_says_something_after_a_silence_and_draws_no_bar(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    bar = TrainProgress(100, 0, "simsiam fashion-mnist", quiet=True, heartbeat=15.0)
    bar.update(1, loss="0.9000")
    clock.now += 10
    bar.update(2)
    bar("kNN monitor: features train", 1024, 10000)
    assert capsys.readouterr().err == ""  # 10 s: not yet
    clock.now += 6
    bar.update(3)
    clock.now += 1
    bar.update(4)  # a line was just printed: quiet again
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["simsiam fashion-mnist: 3/100 (3%)  loss 0.9000"]
    clock.now += 20
    bar("kNN monitor: features train", 2048, 10000)
    assert capsys.readouterr().err.splitlines() == ["kNN monitor: features train: 2048/10000"]
    clock.now += 14
    bar.log("epoch 1: loss 0.8000")  # a logged line counts as saying something
    clock.now += 14
    bar.update(5)
    assert capsys.readouterr().err.splitlines() == ["epoch 1: loss 0.8000"]
    bar.close()


def test_without_a_heartbeat_quiet_mode_prints_only_what_is_logged(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", clock)
    bar = TrainProgress(100, 0, "rank 1", quiet=True, heartbeat=None)
    clock.now += 1000
    bar.update(50)
    bar("features train", 5, 10)
    assert capsys.readouterr().err == ""


def test_a_phase_shows_as_a_second_line_until_it_is_done():
    bar = TrainProgress(10, 0, "train", quiet=False)
    try:
        assert bar._bar is not None
        bar("kNN monitor: features train", 0, 100)
        main, phase = bar._bar.tasks
        assert phase.visible and phase.description == "kNN monitor: features train"
        bar("kNN monitor: features train", 100, 100)
        assert not phase.visible
        bar("kNN monitor: kNN val", 0, 40)
        assert len(bar._bar.tasks) == 2 and phase.visible and (phase.completed, phase.total) == (0, 40)
        bar("kNN monitor: kNN val", 40, 40)
        bar.update(3)
        assert main.completed == 3 and not phase.visible
    finally:
        bar.close()


def test_a_bar_without_a_total_shows_the_phases_themselves():
    bar = TrainProgress(None, 0, "evaluate run", quiet=False)
    try:
        assert bar._bar is not None
        bar("features train", 0, 54000)
        bar("features train", 1024, 54000)
        (task,) = bar._bar.tasks
        assert (task.description, task.completed, task.total) == ("features train", 1024, 54000)
        bar("linear probe", 0, 2)
        assert (task.description, task.completed, task.total) == ("linear probe", 0, 2)
    finally:
        bar.close()
