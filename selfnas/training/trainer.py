"""The SSL trainer: every SSL method on CPU or CUDA, in one process or as torchrun ranks,
resumable to the bit. It supplies the per-step pieces of the shared loop
(:class:`selfnas.training.loop.TrainingLoop`): the weight step on two augmented views, the
metric line with the collapse monitor, the epoch's kNN monitor, the NaN rollback and the
checkpoint with a search strategy's extra state.

Every random draw is a pure function of (seed, epoch) for the data order and
(seed, step) for the augmentation, and the LR is a pure function of the step, so a
run resumed from a checkpoint replays exactly what an uninterrupted run does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from selfnas import distributed
from selfnas.config import TrainConfig
from selfnas.data.augment import TwoViewAugment, augment_preset
from selfnas.data.types import DatasetSplits
from selfnas.device import autocast, prepare_module, resolve_device, resolve_precision
from selfnas.errors import ConfigError, RunDirError, TrainingError
from selfnas.eval.probes import probe_features
from selfnas.eval.scores import normalized_std
from selfnas.io import read_jsonl, write_jsonl
from selfnas.render.plots import plot_training_curves
from selfnas.rundir import RunDir
from selfnas.ssl.base import SSLMethod
from selfnas.tracking import append_metrics
from selfnas.training.builder import build_method, load_config_data, resolved_lr, weight_optimizer
from selfnas.training.checkpoint import load_checkpoint, save_checkpoint, save_weights
from selfnas.training.loop import StepResult, TrainingLoop, stream_seed
from selfnas.training.monitor import COLLAPSE_RATIO, collapse_ratio
from selfnas.training.numerics import NanGuard, all_finite
from selfnas.training.progress import TrainProgress
from selfnas.training.schedule import warmup_cosine

__all__ = ["Plan", "Trainer", "check_resumable", "make_plan", "stream_seed"]


@dataclass
class Plan:
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    weight_decay: float


def make_plan(config: TrainConfig, n_train: int) -> Plan:
    bs = config.optim.batch_size
    if n_train < bs:
        raise ConfigError(
            f"batch size {bs} is larger than the {n_train} training images; lower optim.batch_size"
        )
    spe = n_train // bs
    total = max(1, round(config.optim.epochs * spe))
    peak, wd = resolved_lr(config)
    return Plan(spe, total, min(total, round(config.optim.warmup_epochs * spe)), peak, wd)


class Trainer(TrainingLoop):
    """Pretrain ``config`` into ``run``. ``fit()`` (:class:`~selfnas.training.loop.TrainingLoop`)
    returns the last metric line."""

    plot_curves = True  # plots/training.png at the end (metrics.jsonl has the numbers either way)

    def __init__(
        self,
        config: TrainConfig,
        run: RunDir,
        quiet: bool = False,
        data: DatasetSplits | None = None,
        argv: list[str] | None = None,
    ) -> None:
        self.config = config
        self.run = run
        self.quiet = quiet
        self.argv = argv
        self.device = resolve_device(config.run.device)
        self.precision = resolve_precision(config.run.precision, self.device)
        # torchrun: each rank trains on its contiguous slice of every global batch (see distributed)
        distributed.init()
        self.rank, self.world = distributed.rank(), distributed.world()
        self.main = self.rank == 0  # the one process that writes files
        self.quiet = quiet or not self.main
        #: the thread-count line fit() logs (not printed here: an error before fit stays one line)
        self.threads_note = self._configure_threads()
        local = distributed.check_batch(config.optim.batch_size)
        self.rows = slice(self.rank * local, (self.rank + 1) * local)
        self.part = (self.rank, self.world) if self.world > 1 else None
        self.data = data or load_config_data(config)
        train = self.data.train
        # N x C x H x W uint8, resident on the device
        self.images = self.weight_images(train.images).to(self.device)
        self.plan = make_plan(config, len(self.images))
        view1, view2 = augment_preset(config.method.spec, train.size, train.channels)
        self.augment = TwoViewAugment(view1, view2, self.data.mean, self.data.std)
        torch.manual_seed(config.run.seed)
        self.model: SSLMethod = prepare_module(
            self.build_model(train.channels), self.device, config.run.channels_last
        )
        self.model = distributed.prepare_model(self.model)  # SyncBatchNorm, rank 0's initial weights
        self.step_fn = torch.compile(self.model) if config.run.compile else self.model
        self.optimizers = self.make_optimizers()
        self.optimizer = self.optimizers["weights"]
        self._weight_params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.nan_guard = NanGuard.from_config(config.run)  # see selfnas.training.numerics

    # -- hooks a search strategy overrides ----------------------------------------------

    def weight_images(self, images: torch.Tensor) -> torch.Tensor:
        """The images the weight steps train on (all of train here)."""
        return images

    def build_model(self, in_channels: int) -> SSLMethod:
        return build_method(self.config, in_channels)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"weights": self._weight_optimizer()}

    def before_weight_step(self, step: int, epoch: int) -> None:
        """Called before each weight step (a search runs its architecture step here)."""

    def epoch_record(self, epoch: int) -> dict[str, Any]:
        """Extra fields for the epoch line of metrics.jsonl."""
        return {}

    def after_fit(self) -> None:
        """Called once training finished, before the final weights are written."""

    def progress_info(self) -> dict[str, str]:
        return {}

    def extra_state(self) -> dict[str, Any]:
        """JSON-able state a subclass keeps across a resume (saved with each checkpoint)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    # -- the weight optimizer ------------------------------------------------------------

    def _weight_optimizer(self) -> torch.optim.Optimizer:
        return weight_optimizer(self.model, self.config, self.plan.peak_lr, self.plan.weight_decay)

    # -- the loop's pieces (the skeleton: selfnas.training.loop) ------------------------

    @property
    def steps_per_epoch(self) -> int:  # type: ignore[override]
        return self.plan.steps_per_epoch

    @property
    def total_steps(self) -> int:  # type: ignore[override]
        return self.plan.total_steps

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        return self.config.optim.batch_size

    def _progress_title(self) -> str:
        return f"{self.config.method.name} {self.config.data.name}"

    def _load_counters(self, counters: dict[str, Any]) -> None:
        self.load_extra_state(counters.get("extra", {}))
        self.nan_guard.load_state(counters.get("numerics", {}))

    def _status_fields(self) -> dict[str, Any]:
        return {"processes": self.world}

    def _train_step(self, step: int, epoch: int, index: torch.Tensor) -> StepResult:
        """The hook :meth:`before_weight_step`, then a weight step on this rank's rows of the batch
        (the gradients all-reduced over the ranks) at the scheduled LR times the NaN guard's scale."""
        cfg, plan = self.config, self.plan
        self.before_weight_step(step, epoch)
        batch = self.images[index[self.rows]]  # B x C x H x W uint8 (this rank's)
        g = torch.Generator().manual_seed(stream_seed(cfg.run.seed, 2, step))
        x1, x2 = self.augment(batch, g, part=self.part)
        if cfg.run.channels_last:
            x1 = x1.contiguous(memory_format=torch.channels_last)
            x2 = x2.contiguous(memory_format=torch.channels_last)
        scale = self.nan_guard.lr_scale
        lr = warmup_cosine(step, plan.total_steps, plan.warmup_steps, plan.peak_lr) * scale
        for group in self.optimizer.param_groups:
            group["lr"] = plan.peak_lr * scale if group.get("fixed_lr") else lr
        with autocast(self.device, self.precision):
            out = self.step_fn(x1, x2)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        distributed.all_reduce_grads(self._weight_params)  # several ranks: the global-batch grad
        self.optimizer.step()
        self.model.on_step_end((step + 1) / plan.total_steps)
        return StepResult(out.loss, lr, out)

    def _weights_finite(self) -> bool:
        return all_finite(self.model)

    def _recover(self, step: int) -> dict[str, Any]:
        return self._roll_back(step)  # or stop, per run.nan_policy

    def _step_line(self, done: int, loss: float, result: StepResult, per_s: float) -> dict[str, Any]:
        embedding = distributed.gather(result.out.embedding).float()  # the global batch's
        std = normalized_std(embedding)
        return {
            "kind": "step",
            "step": done,
            "epoch": done / self.plan.steps_per_epoch,
            "loss": loss,
            "lr": result.lr,
            "z_std": std,
            "z_std_ratio": collapse_ratio(std, embedding.shape[1]),
            "pairs_per_s": per_s,
        }

    def _progress_fields(self, line: dict[str, Any]) -> dict[str, str]:
        return {
            "loss": f"{line['loss']:.4f}",
            "pairs/s": f"{line['pairs_per_s']:.0f}",
            **self.progress_info(),
        }

    def _knn_monitor(self, progress: TrainProgress) -> float | None:
        val = self.data.val
        if val is None or not val.labeled or not self.data.train.labeled:
            return None
        result = probe_features(
            self.model.backbone,
            self.augment.normalize,
            self.data.train,
            {"val": val},
            self.device,
            train_limit=self.config.run.knn_bank,
            knn_k=200,
            linear=False,
            precision=self.precision,
            progress=lambda phase, done, total: progress(f"kNN monitor: {phase}", done, total),
        )
        return result.knn["val"]

    def _finish(self, last: dict[str, Any]) -> dict[str, Any]:
        """The hook :meth:`after_fit`, then the final weights, the curves and the finished status;
        returns the last metric line."""
        self.after_fit()
        if self.main:
            save_weights(self.run.model, self.model, metadata={"format": "selfnas-model-1"})
            if self.plot_curves:
                plot_training_curves(self.run)
            self.run.write_status("finished", step=self.plan.total_steps)
        distributed.barrier()  # the run directory is complete when any rank returns
        return last

    def _end_epoch(self, done: int, last: dict[str, Any], progress: TrainProgress) -> None:
        cfg, plan = self.config, self.plan
        epoch = math.ceil(done / plan.steps_per_epoch)
        record: dict[str, Any] = {"kind": "epoch", "step": done, "epoch": epoch, "loss": last.get("loss")}
        ratio = last.get("z_std_ratio")
        record["collapsed"] = bool(ratio is not None and ratio < COLLAPSE_RATIO)
        if cfg.run.knn_every and (epoch % cfg.run.knn_every == 0 or done == plan.total_steps) and self.main:
            knn = self._knn_monitor(progress)  # rank 0 only: eval mode, so no BatchNorm collective
            if knn is not None:
                record["knn_val"] = knn
            self.model.train()
        record.update(self.epoch_record(epoch))
        if not self.main:
            return
        append_metrics(self.run, record)
        msg = f"epoch {epoch}: loss {record['loss']:.4f}"
        if "knn_val" in record:
            msg += f"  kNN monitor (val) {100 * record['knn_val']:.2f}%"
        if self.epoch_lines:
            progress.log(msg)
        if record["collapsed"]:
            warning = (
                f"representation collapse suspected at epoch {epoch}: std of normalised embeddings is "
                f"{ratio:.2f} x the healthy 1/sqrt(d); lower the LR or check the augmentations"
            )
            progress.log(f"[yellow]warning:[/] {warning}" if not self.quiet else f"warning: {warning}")
            status = self.run.read_status()
            self.run.write_status("running", warnings=[*status.get("warnings", []), warning], collapsed=True)

    def _save_checkpoint(self, counters: dict[str, Any]) -> None:
        """The resumable state: model, optimizers, ``counters`` (step, partial loss sums), the
        subclass's extra state and the NaN guard's LR scale."""
        extra = {**counters, "extra": self.extra_state(), "numerics": self.nan_guard.state()}
        save_checkpoint(self.run.checkpoint, self.model, self.optimizers, extra)

    def _roll_back(self, step: int) -> dict[str, Any]:
        """A non-finite loss or weight at ``step``: reload the last good checkpoint with a lower LR
        and return its counters, or raise the one-line TrainingError (``run.nan_policy``)."""
        guard = self.nan_guard
        if not guard.can_roll_back() or not self.run.checkpoint.exists():
            self._fail_nan(step)
        counters = load_checkpoint(self.run.checkpoint, self.model, self.optimizers)
        self.load_extra_state(counters.get("extra", {}))
        guard.back_off(self.optimizers)
        good = counters["step"]
        if self.main:
            self._save_checkpoint({"step": good, "acc": counters.get("acc", {})})  # keeps the new scale
            event = {"kind": "event", "event": "nan_rollback", "step": good, "failed_step": step + 1,
                     "lr_scale": guard.lr_scale, "rollback": guard.rollbacks}  # fmt: skip
            kept = [r for r in read_jsonl(self.run.metrics) if r.get("step", 0) <= good]
            write_jsonl(self.run.metrics, [*kept, event])  # the replay writes the dropped lines again
            warning = (
                f"loss became NaN/inf by step {step + 1}: rolled back to step {good} with the LR scaled "
                f"to x{guard.lr_scale:g} (rollback {guard.rollbacks} of {guard.retries})"
            )
            warnings = [*self.run.read_status().get("warnings", []), warning]
            self.run.write_status("running", step=good, warnings=warnings)
        distributed.barrier()
        return counters

    def _fail_nan(self, step: int) -> None:
        where = (
            f"the last good checkpoint is kept at {self.run.checkpoint}"
            if self.run.checkpoint.exists()
            else "no checkpoint was written yet"
        )
        message = (
            f"loss became NaN/inf at step {step + 1}{self.nan_guard.note()}; {where}; "
            "lower optim.lr and continue with --resume"
        )
        if self.main:
            self.run.write_status("failed", message=message)
        raise TrainingError(message)


def check_resumable(run: RunDir) -> None:
    """Refuse to resume a finished run. One killed in its evaluation (``"evaluating"``, see
    :func:`selfnas.evaluation.evaluate`) resumes: no step is left, and ``selfnas train --resume``
    evaluates it again."""
    if run.read_status().get("state") == "finished" and run.model.exists():
        raise RunDirError(f"run {run.path} already finished; evaluate it with `selfnas eval {run.path}`")
