"""The shared training-loop skeleton: a step's batch depends only on (seed, step), the window's
loss sum survives a checkpoint read, and the pieces run at the points the config sets, a NaN
replaying from the counters the trainer recovers to."""

from __future__ import annotations

import math
from typing import Any

import torch

from selfnas.config import build_config
from selfnas.io import read_jsonl
from selfnas.rundir import RunDir
from selfnas.training.loop import EpochOrder, StepResult, TrainingLoop, Window


def test_a_steps_batch_depends_only_on_the_seed_and_the_step():
    """An epoch's batches are disjoint; a replay that jumps to a step draws the same batch as the
    run that walked there; the next epoch is another order."""
    walked = EpochOrder(seed=3, n=20, device=torch.device("cpu"))
    batches = [walked.batch(step, 4, 5) for step in range(8)]
    first_epoch = torch.cat(batches[:4])
    assert first_epoch.unique().numel() == 20
    assert not torch.equal(first_epoch, torch.cat(batches[4:]))
    jumped = EpochOrder(seed=3, n=20, device=torch.device("cpu"))
    assert torch.equal(jumped.batch(6, 4, 5), batches[6])
    jumped.forget()
    assert torch.equal(jumped.batch(1, 4, 5), batches[1])
    other = EpochOrder(seed=4, n=20, device=torch.device("cpu"))
    assert not torch.equal(other.batch(0, 4, 5), batches[0])


def test_the_window_sums_the_loss_across_a_checkpoint_read():
    """A checkpoint point reads the sum to the host mid-window; the metric line still averages
    every step since the last line."""
    window = Window({})
    for loss in (1.0, 2.0):
        window.add(torch.tensor(loss), images=4)
    assert window.read_loss() == 3.0  # a checkpoint point: the host holds the sum
    window.add(torch.tensor(6.0), images=4)
    assert window.read_loss() == 9.0 and window.acc == {"loss": 9.0, "n": 3} and window.images == 12
    window.restart()
    assert window.acc == {} and window.images == 0


class Toy(TrainingLoop):
    """3 steps an epoch of 4 of 12 images, 2 epochs; the loss is the step, NaN at ``nan_at`` once."""

    def __init__(self, tmp_path, nan_at: int | None = None) -> None:
        self.config = build_config(overrides=["run.log_every=2", "run.checkpoint_every=4", "run.seed=1"])
        self.run = RunDir.prepare(tmp_path / "run")
        self.quiet, self.argv, self.threads_note = True, None, None
        self.device, self.precision = torch.device("cpu"), "fp32"
        self.model = torch.nn.Linear(1, 1)
        self.optimizers = {"weights": torch.optim.SGD(self.model.parameters(), lr=0.1)}
        self.images = torch.arange(12)
        self.steps_per_epoch, self.total_steps, self.batch_size = 3, 6, 4
        self.nan_at = nan_at
        self.steps: list[tuple[int, list[int]]] = []
        self.saved: list[dict[str, Any]] = []
        self.epochs: list[tuple[int, float]] = []

    def _progress_title(self) -> str:
        return "toy"

    def _train_step(self, step: int, epoch: int, index: torch.Tensor) -> StepResult:
        self.steps.append((step, self.images[index].tolist()))
        if step == self.nan_at:
            self.nan_at = None
            return StepResult(torch.tensor(math.nan), 0.1)
        return StepResult(torch.tensor(float(step)), 0.1)

    def _recover(self, step: int) -> dict[str, Any]:
        return {"step": 3, "acc": {}}  # the checkpoint at the end of epoch 1

    def _step_line(self, done: int, loss: float, result: StepResult, per_s: float) -> dict[str, Any]:
        return {"kind": "step", "step": done, "loss": loss}

    def _end_epoch(self, done: int, last: dict[str, Any], progress: Any) -> None:
        self.epochs.append((done, last["loss"]))

    def _save_checkpoint(self, counters: dict[str, Any]) -> None:
        self.saved.append({**counters, "acc": dict(counters["acc"])})

    def _finish(self, last: dict[str, Any]) -> dict[str, Any]:
        return {"finished": last}


def test_the_pieces_run_at_the_configured_points(tmp_path):
    toy = Toy(tmp_path)
    assert toy.fit() == {"finished": {"kind": "step", "step": 6, "loss": 4.5}}
    assert [s for s, _ in toy.steps] == [0, 1, 2, 3, 4, 5]
    lines = read_jsonl(toy.run.metrics)
    assert [(r["step"], r["loss"]) for r in lines] == [(2, 0.5), (3, 2.0), (4, 3.0), (6, 4.5)]
    assert toy.epochs == [(3, 2.0), (6, 4.5)]  # each epoch's end sees its last metric line
    assert [c["step"] for c in toy.saved] == [0, 3, 4, 6]  # the start, epoch ends, checkpoint_every
    assert toy.run.read_status()["step"] == 6


def test_a_nan_replays_from_the_recovered_counters_with_the_same_batches(tmp_path):
    clean, poisoned, late = (
        Toy(tmp_path / "clean"),
        Toy(tmp_path / "nan", nan_at=3),
        Toy(tmp_path / "late", 4),
    )
    for toy in (clean, poisoned, late):
        toy.fit()
    assert [s for s, _ in poisoned.steps] == [0, 1, 2, 3, 3, 4, 5]  # found at once: 4 steps done is a point
    assert [s for s, _ in late.steps] == [0, 1, 2, 3, 4, 5, 3, 4, 5]  # 5 steps done is none: found after 6
    replayed = dict(poisoned.steps[4:])
    assert all(batch == replayed[step] for step, batch in clean.steps if step in replayed)
    assert [(r["step"], r["loss"]) for r in read_jsonl(poisoned.run.metrics)][-2:] == [(4, 3.0), (6, 4.5)]
