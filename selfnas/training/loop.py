"""The training-loop skeleton that the SSL trainer and the supervised trainer share.

:meth:`TrainingLoop.fit` runs the steps from the checkpoint's step to the plan's last, each
in the same named pieces: draw the step's batch from the epoch's order (:class:`EpochOrder`),
take one optimizer step (:meth:`~TrainingLoop._train_step`, the trainer's own), add its loss to
the :class:`Window`, and at the step's points (:meth:`~TrainingLoop._points`) check the loss
for NaN/inf, write a metric line, close an epoch and write a checkpoint. A trainer supplies the
step itself, the metric line, the epoch's end, the checkpoint and the finish; the resume, the
run directory's first files, the progress bar and the order of the pieces live here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from selfnas import distributed
from selfnas.config import TrainConfig, config_to_yaml
from selfnas.device import Precision, configure_threads
from selfnas.io import atomic_write_json, atomic_write_text, read_jsonl, write_jsonl
from selfnas.provenance import collect_provenance
from selfnas.rundir import RunDir
from selfnas.tracking import append_metrics
from selfnas.training.checkpoint import load_checkpoint
from selfnas.training.progress import HEARTBEAT_S, TrainProgress


def stream_seed(seed: int, stream: int, index: int) -> int:
    """A distinct 63-bit seed per (run seed, purpose, index)."""
    return (seed * 1_000_003 + stream * 7_919 + index * 2_654_435_761) % (2**63 - 1)


class EpochOrder:
    """The data order: one permutation of the ``n`` training images per epoch, a pure function
    of (seed, epoch), drawn when the epoch's first step asks for it."""

    def __init__(self, seed: int, n: int, device: torch.device) -> None:
        self.seed, self.n, self.device = seed, n, device
        self.epoch = -1
        self.perm = torch.empty(0, dtype=torch.long)

    def batch(self, step: int, steps_per_epoch: int, batch_size: int) -> torch.Tensor:
        """The indices of ``step``'s global batch (``batch_size`` of them, on the device)."""
        epoch = step // steps_per_epoch
        if epoch != self.epoch:
            g = torch.Generator().manual_seed(stream_seed(self.seed, 1, epoch))
            self.perm, self.epoch = torch.randperm(self.n, generator=g).to(self.device), epoch
        pos = (step % steps_per_epoch) * batch_size
        return self.perm[pos : pos + batch_size]

    def forget(self) -> None:
        """Draw the permutation again at the next step (after a rollback)."""
        self.epoch = -1


@dataclass
class Window:
    """What the loop sums between two metric lines.

    ``acc`` holds the loss summed on the host (``"loss"``) and the steps (``"n"``) and is saved
    with each checkpoint; ``loss_sum`` is the sum on the device since the host last read it (the
    host reads it only at log and checkpoint points); ``images`` and ``t0`` give the throughput.
    """

    acc: dict[str, Any]
    loss_sum: torch.Tensor | None = None
    images: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, loss: torch.Tensor, images: int) -> None:
        before = self.loss_sum if self.loss_sum is not None else self.acc.get("loss", 0.0)
        self.loss_sum = loss.detach().float() + before
        self.acc["n"] = self.acc.get("n", 0) + 1
        self.images += images

    def read_loss(self) -> float:
        """The summed loss on the host (the ranks' mean: the same on every rank)."""
        assert self.loss_sum is not None
        self.acc["loss"] = float(distributed.mean([self.loss_sum])[0])
        self.loss_sum = None
        return self.acc["loss"]

    def per_s(self) -> float:
        """Images per second since the window opened."""
        return self.images / max(time.perf_counter() - self.t0, 1e-9)

    def restart(self) -> None:
        """Open the next window after a metric line."""
        self.acc = {}
        self.t0, self.images = time.perf_counter(), 0


class StepResult(NamedTuple):
    """One optimizer step: its loss (a device scalar), its LR and the model's output."""

    loss: torch.Tensor
    lr: float
    out: Any = None


class TrainingLoop:
    """The shared loop. A trainer sets ``config``, ``run``, ``quiet``, ``argv``, ``device``,
    ``precision`` (:func:`selfnas.device.resolve_precision`), ``model``, ``optimizers``, ``images``
    (N x C x H x W on the device) and ``threads_note``, defines ``steps_per_epoch``, ``total_steps``
    and ``batch_size`` (the global batch), and implements the pieces below marked "a trainer's own"."""

    config: TrainConfig
    run: RunDir
    quiet: bool
    argv: list[str] | None
    device: torch.device
    precision: Precision
    model: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    images: torch.Tensor
    threads_note: str | None
    steps_per_epoch: int
    total_steps: int
    batch_size: int

    main = True  # the process that writes files (rank 0 under torchrun)
    epoch_lines = True  # print "epoch N: loss ..." after each epoch (metrics.jsonl has it either way)

    # -- the skeleton ------------------------------------------------------------------

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train from the start, or with ``resume`` from the checkpoint; returns :meth:`_finish`."""
        counters = self._start(resume)
        progress = self._open_progress(counters["step"])
        self.model.train()
        order = EpochOrder(self.config.run.seed, len(self.images), self.device)
        window = Window(counters.get("acc", {}))
        last: dict[str, Any] = {}
        try:
            step = counters["step"] - 1
            while (step := step + 1) < self.total_steps:  # not a for loop: a NaN rollback moves step back
                index = order.batch(step, self.steps_per_epoch, self.batch_size)
                result = self._train_step(step, step // self.steps_per_epoch, index)
                window.add(result.loss, self.batch_size)
                done = step + 1
                end_of_epoch, log_now, ckpt_now = self._points(done)
                if (log_now or ckpt_now) and not self._finite(window.read_loss()):
                    counters = self._recover(step)  # a checkpoint's counters, or a raised error
                    step, window = counters["step"] - 1, Window(counters.get("acc", {}))
                    order.forget()
                    continue
                if log_now:
                    last = self._log_step(done, result, window, progress)
                else:
                    progress.update(done)  # the count every step; loss and images/s at log points
                if end_of_epoch:
                    self._end_epoch(done, last, progress)
                if ckpt_now and self.main:
                    self._save_checkpoint(self._checkpoint_counters(done, window.acc))
                    self.run.write_status("running", step=done)
        except KeyboardInterrupt:
            if self.main:
                self.run.write_status("interrupted", message="interrupted; continue with --resume")
            raise
        finally:
            progress.close()
        return self._finish(last)

    def _points(self, done: int) -> tuple[bool, bool, bool]:
        """Whether ``done`` steps end an epoch, call for a metric line, call for a checkpoint."""
        run = self.config.run
        end_of_epoch = done % self.steps_per_epoch == 0 or done == self.total_steps
        log_now = done % run.log_every == 0 or end_of_epoch
        ckpt_now = done % run.checkpoint_every == 0 or end_of_epoch
        return end_of_epoch, log_now, ckpt_now

    def _finite(self, loss: float) -> bool:
        return math.isfinite(loss) and self._weights_finite()

    def _log_step(
        self, done: int, result: StepResult, window: Window, progress: TrainProgress
    ) -> dict[str, Any]:
        """Write the metric line of the window that ends at ``done`` and open the next window."""
        mean = window.acc["loss"] / window.acc["n"]
        line = self._step_line(done, mean, result, window.per_s())
        if self.main:
            append_metrics(self.run, line)
        window.restart()
        progress.update(done, **self._progress_fields(line))
        return line

    # -- start and progress --------------------------------------------------------------

    def _configure_threads(self) -> str | None:
        """``run.threads`` when set; else the count this run recorded when it started (a resumed run
        replays with it: float reductions depend on the thread count); else chosen from the free
        cores (see :func:`selfnas.device.configure_threads`)."""
        recorded = self.run.read_status().get("threads")
        ok = isinstance(recorded, int) and not isinstance(recorded, bool) and recorded >= 1
        return configure_threads(self.config.run.threads, recorded if ok else None)

    def _start(self, resume: bool) -> dict[str, Any]:
        """The counters to start from: the checkpoint's when resuming (metric lines written after
        it are dropped, the replay writes them again), else step 0, with the run's config,
        provenance and a step-0 checkpoint written (a NaN before the first checkpoint rolls back
        there)."""
        counters = self._fresh_counters()
        if resume and self.run.checkpoint.exists():
            counters = load_checkpoint(self.run.checkpoint, self.model, self.optimizers)
            self._load_counters(counters)
            if self.main:
                self.run.remove_temp_files()  # the temp files of atomic writes a kill interrupted
                kept = [r for r in read_jsonl(self.run.metrics) if self._kept_on_resume(r, counters["step"])]
                write_jsonl(self.run.metrics, kept)
        elif self.main:
            if self.run.metrics.exists():
                self.run.metrics.unlink()
            atomic_write_text(self.run.config, config_to_yaml(self.config))
            provenance = collect_provenance(self.config.run.seed, self.argv, self.precision)
            atomic_write_json(self.run.provenance, provenance)
            self._save_checkpoint(counters)
        if self.main:
            self.run.write_status(
                "running", step=counters["step"], total_steps=self.total_steps, **self._status_fields(),
                threads=torch.get_num_threads(),
            )  # fmt: skip
        return counters

    def _open_progress(self, start: int) -> TrainProgress:
        progress = TrainProgress(
            self.total_steps, start, self._progress_title(), self.quiet,
            heartbeat=HEARTBEAT_S if self.main and self.epoch_lines else None,
        )  # fmt: skip
        if self.threads_note and self.main and self.epoch_lines:
            progress.log(self.threads_note)
        return progress

    # -- pieces with a default -----------------------------------------------------------

    def _fresh_counters(self) -> dict[str, Any]:
        """The counters of step 0."""
        return {"step": 0, "acc": {}}

    def _load_counters(self, counters: dict[str, Any]) -> None:
        """Restore the trainer's own state from a checkpoint's counters."""

    def _kept_on_resume(self, record: dict[str, Any], step: int) -> bool:
        """Whether a metric line survives a resume from the checkpoint of ``step``."""
        return record.get("step", 0) <= step

    def _status_fields(self) -> dict[str, Any]:
        """Extra status.json fields written when training starts."""
        return {}

    def _weights_finite(self) -> bool:
        """Checked after a finite loss at each log or checkpoint point."""
        return True

    def _progress_fields(self, line: dict[str, Any]) -> dict[str, str]:
        """The progress bar's text after the metric line ``line``."""
        return {"loss": f"{line['loss']:.4f}"}

    def _checkpoint_counters(self, done: int, acc: dict[str, Any]) -> dict[str, Any]:
        """The counters saved with the checkpoint after ``done`` steps."""
        return {"step": done, "acc": acc}

    # -- a trainer's own -------------------------------------------------------------------

    def _progress_title(self) -> str:
        raise NotImplementedError

    def _train_step(self, step: int, epoch: int, index: torch.Tensor) -> StepResult:
        """One optimizer step (0-based ``step``) on the global batch ``index`` of the images."""
        raise NotImplementedError

    def _recover(self, step: int) -> dict[str, Any]:
        """A NaN/inf by ``step``: the counters to continue from, or a raised TrainingError."""
        raise NotImplementedError

    def _step_line(self, done: int, loss: float, result: StepResult, per_s: float) -> dict[str, Any]:
        """The metric line after ``done`` steps; ``loss``: the window's mean loss."""
        raise NotImplementedError

    def _end_epoch(self, done: int, last: dict[str, Any], progress: TrainProgress) -> None:
        """Log the epoch that ends at ``done``; ``last`` is its last metric line."""
        raise NotImplementedError

    def _save_checkpoint(self, counters: dict[str, Any]) -> None:
        raise NotImplementedError

    def _finish(self, last: dict[str, Any]) -> dict[str, Any]:
        """After the last step: the final weights and files; returns what :meth:`fit` returns."""
        raise NotImplementedError
