"""Supervised training with labels: a backbone + linear classifier, from scratch (the evaluation phase
of DARTS / CSNAS, ``supervised`` section) or from a pretrained backbone (fine-tuning, ``finetune``
section; see :mod:`selfnas.training.finetune`). Resumable to the bit, as the SSL trainer.

SGD with momentum (Nesterov optional), a cosine LR from the peak to 0 over the steps, weight decay
on every parameter and gradient-norm clipping, as DARTS's ``train.py``. Augmentation: random crop,
flip and cutout (:mod:`selfnas.data.supervised_augment`). Drop-path rises linearly from 0 to its
final value over the steps (DARTS raises it per epoch: ``p * epoch / epochs``). The auxiliary head
adds ``auxiliary_weight`` times its loss in training. The data order is a pure function of
(seed, epoch), the augmentation and the drop-path draws of (seed, step) and the LR of the step.

After every epoch the validation accuracy is logged; fine-tuning keeps the weights of the epoch
with the best validation accuracy (``checkpoints/best.safetensors``), supervised training its
final weights. Those weights are ``model.safetensors`` and are measured on val and test into
``eval.json``'s section (``supervised`` or ``finetune``): ``{"val", "test", ...}``. Nothing is
selected on test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfnas import distributed
from selfnas.config import SupervisedConfig, TrainConfig, read_config_file
from selfnas.data import load_dataset
from selfnas.data.splits import carve_validation, limit_images
from selfnas.data.supervised_augment import SupervisedAugment
from selfnas.data.types import DatasetSplits, ImageSet
from selfnas.device import Precision, autocast, prepare_module, resolve_device, resolve_precision
from selfnas.errors import ConfigError, DatasetError, RunDirError, TrainingError
from selfnas.io import atomic_write_json
from selfnas.models.backbones import create_backbone
from selfnas.models.precise_bn import recompute_batchnorm
from selfnas.rundir import RunDir
from selfnas.tracking import append_metrics
from selfnas.training.checkpoint import load_weights, save_checkpoint, save_weights
from selfnas.training.classifier import Classifier, supervised_loss
from selfnas.training.loop import StepResult, TrainingLoop, stream_seed
from selfnas.training.progress import TrainProgress
from selfnas.training.schedule import warmup_cosine

WEIGHTS_FORMAT = "selfnas-classifier-1"
EVAL_BATCH = 512
PRECISE_BN_IMAGES = 4096  # clean training images whose average BatchNorm statistics eval mode uses


@dataclass(frozen=True)
class Recipe:
    """One supervised training, whichever section it came from; ``section`` names eval.json's part."""

    section: str
    epochs: float
    batch_size: int
    lr: float
    backbone_lr_ratio: float
    momentum: float
    nesterov: bool
    weight_decay: float
    grad_clip: float | None
    crop_padding: int
    flip: bool
    cutout: int = 0
    drop_path: float = 0.0
    auxiliary: bool = False
    auxiliary_weight: float = 0.4
    label_smoothing: float = 0.0
    select_on_val: bool = False
    precise_bn: bool = True


def make_recipe(config: TrainConfig) -> Recipe:
    """The ``finetune`` section when there is one, else ``supervised`` (its defaults when unset)."""
    f = config.finetune
    if f is not None:
        return Recipe("finetune", f.epochs, f.batch_size, f.lr, f.backbone_lr_ratio, f.momentum, f.nesterov,
                      f.weight_decay, None, f.crop_padding, f.flip, select_on_val=True,
                      precise_bn=f.precise_bn)  # fmt: skip
    s = config.supervised or SupervisedConfig()
    return Recipe("supervised", s.epochs, s.batch_size, s.lr, 1.0, s.momentum, s.nesterov, s.weight_decay,
                  s.grad_clip, s.crop_padding, s.flip, s.cutout, s.drop_path, s.auxiliary,
                  s.auxiliary_weight, s.label_smoothing, precise_bn=s.precise_bn)  # fmt: skip


def supervised_config(config: TrainConfig) -> TrainConfig:
    """``config`` as a supervised run: its ``supervised`` section (the defaults when unset), no search
    or fine-tuning section."""
    update = {"search": None, "finetune": None, "supervised": config.supervised or SupervisedConfig()}
    return config.model_copy(update=update)


def drop_path_at(final: float, step: int, total_steps: int) -> float:
    """The drop-path probability of ``step`` (0-based): ``final * step / total_steps``."""
    return final * step / total_steps


def labeled_splits(config: TrainConfig) -> DatasetSplits:
    """The config's data with labels: train (``data.train_limit``), val (carved with
    ``data.val_fraction`` and ``run.seed``, also from a scenario's labeled view, which has none) and
    test, the held-out ones capped by ``run.eval_test_limit``. DatasetError without labels."""
    c, seed = config.data, config.run.seed
    data = load_dataset(c.name, root=c.root, download=c.download, val_fraction=c.val_fraction, seed=seed,
                        train_limit=c.train_limit)  # fmt: skip
    if not data.train.labeled:
        raise DatasetError(f"{c.name} has no labels; training with labels needs a labeled --data")
    train, val = data.train, data.val
    if val is None and c.val_fraction > 0:
        train, val = carve_validation(train, c.val_fraction, seed)

    def held_out(split: ImageSet | None) -> ImageSet | None:
        if split is None or not split.labeled:
            return None
        return limit_images(split, config.run.eval_test_limit, seed, what="eval_test_limit")

    return DatasetSplits(data.name, train, held_out(val), held_out(data.test), data.mean, data.std)


@torch.no_grad()
def accuracy(
    model: Classifier, images: ImageSet, normalize: Any, device: torch.device, precision: Precision
) -> float:
    """Top-1 accuracy of ``model`` (eval mode, computing in ``precision``) on a labeled split."""
    assert images.labels is not None
    model.eval()
    correct = 0
    for i in range(0, len(images), EVAL_BATCH):
        x = normalize(images.images[i : i + EVAL_BATCH].to(device))  # B x C x H x W
        with autocast(device, precision):
            logits, _ = model(x)  # B x K
        correct += int((logits.argmax(1) == images.labels[i : i + EVAL_BATCH].to(device)).sum())
    return correct / len(images)


class SupervisedTrainer(TrainingLoop):
    """Train ``config``'s backbone + classifier with labels into ``run``; :meth:`fit`
    (:class:`~selfnas.training.loop.TrainingLoop`) returns the evaluation (eval.json).
    ``pretrained``: the backbone's initial state dict (fine-tuning); ``record``: extra fields for
    the eval.json section (the label subset)."""

    def __init__(
        self,
        config: TrainConfig,
        run: RunDir,
        quiet: bool = False,
        argv: list[str] | None = None,
        data: DatasetSplits | None = None,
        pretrained: dict[str, torch.Tensor] | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        if distributed.launched():
            raise ConfigError(
                "supervised training and fine-tuning run in one process; start them without torchrun"
            )
        self.config, self.run, self.quiet, self.argv = config, run, quiet, argv
        self.recipe = r = make_recipe(config)
        self.record = record or {}
        self.device = resolve_device(config.run.device)
        self.precision = resolve_precision(config.run.precision, self.device)
        self.threads_note = self._configure_threads()
        self.data = data or labeled_splits(config)
        train = self.data.train
        if train.labels is None:
            raise DatasetError(f"{self.data.name} has no labels; training with labels needs a labeled --data")
        if len(train) < r.batch_size:
            raise ConfigError(
                f"{r.section}.batch_size {r.batch_size} is larger than the {len(train)} labeled training "
                f"images; lower {r.section}.batch_size"
            )
        self.images, self.labels = train.images.to(self.device), train.labels.to(self.device)
        self.steps_per_epoch = len(train) // r.batch_size
        self.total_steps = max(1, round(r.epochs * self.steps_per_epoch))
        self.augment = SupervisedAugment(self.data.mean, self.data.std, r.crop_padding, r.flip, r.cutout)
        torch.manual_seed(config.run.seed)
        self.model = prepare_module(
            self._build(train.channels, pretrained), self.device, config.run.channels_last
        )
        self.optimizer = self._make_optimizer()
        self.optimizers = {"weights": self.optimizer}
        #: the epoch of the best val accuracy so far (fine-tuning keeps its weights); checkpointed
        self.best: dict[str, Any] | None = None

    # -- building ------------------------------------------------------------------------

    def _num_classes(self) -> int:
        splits = [s for s in (self.data.train, self.data.val, self.data.test) if s is not None and s.labeled]
        return max(max(s.num_classes, int(s.labels.max()) + 1) for s in splits)  # type: ignore[union-attr]

    def _build(self, channels: int, pretrained: dict[str, torch.Tensor] | None) -> Classifier:
        m, r = self.config.model, self.recipe
        backbone = create_backbone(m.backbone, in_channels=channels, **m.backbone_kwargs)
        if pretrained is not None:
            try:
                missing, unexpected = backbone.load_state_dict(pretrained, strict=False)
            except RuntimeError:  # a size mismatch: other image channels or another width
                missing, unexpected = ["(a tensor of another shape)"], []
            if missing or unexpected:
                raise RunDirError(
                    f"the pretrained weights do not fit {m.backbone} on {channels}-channel "
                    f"{self.data.name} images ({len(missing)} missing or misshapen, {len(unexpected)} "
                    "unexpected keys); "
                    "fine-tune on images like those it was pretrained on"
                )
        if r.drop_path > 0 and not hasattr(backbone, "drop_path_prob"):
            raise ConfigError(
                f"drop-path needs the darts_cells backbone, not {m.backbone}; set {r.section}.drop_path=0"
            )
        return Classifier(backbone, self._num_classes(), auxiliary=r.auxiliary)

    def _make_optimizer(self) -> torch.optim.SGD:
        """Two groups: the backbone at ``backbone_lr_ratio`` of the LR, the heads at the full LR."""
        r = self.recipe
        backbone = list(self.model.backbone.parameters())
        owned = {id(p) for p in backbone}
        heads = [p for p in self.model.parameters() if id(p) not in owned]
        groups = [{"params": backbone, "lr_scale": r.backbone_lr_ratio}, {"params": heads, "lr_scale": 1.0}]
        return torch.optim.SGD(
            groups,
            lr=r.lr,
            momentum=r.momentum,
            nesterov=r.nesterov and r.momentum > 0,
            weight_decay=r.weight_decay,
        )

    @property
    def best_weights(self) -> Path:
        return self.run.checkpoint.parent / "best.safetensors"

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        return self.recipe.batch_size

    # -- the loop's pieces (the skeleton: selfnas.training.loop) ------------------------

    def _progress_title(self) -> str:
        return f"{self.recipe.section} {self.config.model.backbone} {self.config.data.name}"

    def _fresh_counters(self) -> dict[str, Any]:
        return {"step": 0, "acc": {}, "best": None}

    def _load_counters(self, counters: dict[str, Any]) -> None:
        self.best = counters.get("best")

    def _kept_on_resume(self, record: dict[str, Any], step: int) -> bool:
        return record.get("step", 0) <= step and record.get("kind") != "eval"

    def _checkpoint_counters(self, done: int, acc: dict[str, Any]) -> dict[str, Any]:
        return {"step": done, "acc": acc, "best": self.best}

    def _save_checkpoint(self, counters: dict[str, Any]) -> None:
        save_checkpoint(self.run.checkpoint, self.model, self.optimizers, counters)

    def _train_step(self, step: int, epoch: int, index: torch.Tensor) -> StepResult:
        """One SGD step at the cosine LR (each group at its share), with the step's drop-path
        probability and draws, the auxiliary loss and gradient-norm clipping."""
        r, seed = self.recipe, self.config.run.seed
        backbone: nn.Module = self.model.backbone
        x = self.augment(self.images[index], torch.Generator().manual_seed(stream_seed(seed, 2, step)))
        y = self.labels[index]
        lr = warmup_cosine(step, self.total_steps, 0, r.lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        if r.drop_path > 0:
            backbone.drop_path_prob = drop_path_at(r.drop_path, step, self.total_steps)
            torch.manual_seed(stream_seed(seed, 3, step))  # the drop-path draws of this step
        with autocast(self.device, self.precision):
            logits, aux = self.model(x)  # B x K, B x K or None
        loss = supervised_loss(logits, aux, y, r.label_smoothing, r.auxiliary_weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if r.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), r.grad_clip)
        self.optimizer.step()
        return StepResult(loss, lr)

    def _recover(self, step: int) -> dict[str, Any]:
        raise self._nan_error(step + 1)  # no rollback: the run stops at its last good checkpoint

    def _step_line(self, done: int, loss: float, result: StepResult, per_s: float) -> dict[str, Any]:
        line = {"kind": "step", "step": done, "epoch": done / self.steps_per_epoch, "loss": loss,
                "lr": result.lr, "images_per_s": per_s}  # fmt: skip
        if self.recipe.drop_path > 0:
            line["drop_path"] = self.model.backbone.drop_path_prob
        return line

    def _end_epoch(self, done: int, last: dict[str, Any], progress: TrainProgress) -> None:
        """Log the epoch's last loss and validation accuracy; fine-tuning keeps the best epoch's
        weights (:attr:`best`). Leaves the model in training mode."""
        epoch, best = math.ceil(done / self.steps_per_epoch), self.best
        record: dict[str, Any] = {"kind": "epoch", "step": done, "epoch": epoch, "loss": last["loss"]}
        if self.recipe.precise_bn:
            record["precise_bn_images"] = self._recompute_batchnorm()
        msg = f"epoch {epoch}: loss {record['loss']:.4f}"
        if self.data.val is not None:
            record["val_acc"] = accuracy(
                self.model, self.data.val, self.augment.normalize, self.device, self.precision
            )
            msg += f"  val {100 * record['val_acc']:.2f}%"
            if self.recipe.select_on_val and (best is None or record["val_acc"] > best["val_acc"]):
                save_weights(self.best_weights, self.model, metadata={"format": WEIGHTS_FORMAT})
                best = {"epoch": epoch, "step": done, "val_acc": record["val_acc"]}
                record["selected"] = True
        append_metrics(self.run, record)
        progress.log(msg)
        self.best = best
        self.model.train()

    def _recompute_batchnorm(self) -> int:
        """Precise BN (:mod:`selfnas.models.precise_bn`): the running statistics become the average
        over up to :data:`PRECISE_BN_IMAGES` clean training images (a fixed seeded subset, training
        batch size, drop path off), so that eval mode measures what was trained even after a few
        steps. Returns the number of images used."""
        n = min(PRECISE_BN_IMAGES, len(self.images))
        g = torch.Generator().manual_seed(stream_seed(self.config.run.seed, 4, 0))
        chosen = self.images[torch.randperm(len(self.images), generator=g)[:n].to(self.device)]
        backbone = self.model.backbone
        drop_path = getattr(backbone, "drop_path_prob", None)
        if drop_path:
            backbone.drop_path_prob = 0.0
        try:
            with autocast(self.device, self.precision):
                batches = (self.augment.normalize(b) for b in chosen.split(self.recipe.batch_size))
                recompute_batchnorm(self.model, batches)
        finally:
            if drop_path:
                backbone.drop_path_prob = drop_path
        return n

    def _nan_error(self, done: int) -> TrainingError:
        """The one-line error of a NaN/inf loss by step ``done``, written to status.json."""
        message = (
            f"loss became NaN/inf by step {done}; the last good checkpoint is kept at {self.run.checkpoint}; "
            f"lower {self.recipe.section}.lr and continue with --resume"
        )
        self.run.write_status("failed", message=message)
        return TrainingError(message)

    def _finish(self, last: dict[str, Any]) -> dict[str, Any]:
        """Measure the kept weights on val and test; write model.safetensors, eval.json, status."""
        r, data, best = self.recipe, self.data, self.best
        if r.select_on_val and best is not None:
            load_weights(self.best_weights, self.model)
        if r.drop_path > 0:
            self.model.backbone.drop_path_prob = 0.0
        scores: dict[str, Any] = {}
        for name, split in (("val", data.val), ("test", data.test)):
            if split is not None:
                scores[name] = accuracy(
                    self.model, split, self.augment.normalize, self.device, self.precision
                )
        section: dict[str, Any] = {**self.record, **scores, "epochs": r.epochs, "steps": self.total_steps}
        if r.select_on_val:
            section["selected"] = (
                "the epoch of the best val accuracy" if best else "the last epoch (no val split)"
            )
            section["epoch"] = best["epoch"] if best else math.ceil(self.total_steps / self.steps_per_epoch)
        section.update(self.model.parameter_counts())
        result = {
            "data": data.name,
            "n_train": len(data.train),
            "n_held_out": {n: len(s) for n, s in (("val", data.val), ("test", data.test)) if s is not None},
            "limits": {"test": self.config.run.eval_test_limit},
            "weights": self.run.model.name,
            r.section: section,
        }
        save_weights(self.run.model, self.model, metadata={"format": WEIGHTS_FORMAT})
        atomic_write_json(self.run.eval, result)
        append_metrics(self.run, {"kind": "eval", "step": self.total_steps, **result})
        self.run.write_status("finished", step=self.total_steps)
        return result


def check_labeled_resumable(run: RunDir, section: str) -> None:
    """Before resuming ``run`` as a ``section`` (``supervised`` / ``finetune``) run: refuse another
    kind of run, and a finished one (its results are in eval.json). A missing run passes (the run
    directory's own check says so)."""
    if not run.config.is_file():
        return
    if read_config_file(run.config).get(section) is None:
        raise RunDirError(f"{run.path} is not a {section} run; resume it with the command that started it")
    if run.read_status().get("state") == "finished" and run.eval.exists():
        raise RunDirError(f"run {run.path} already finished; its accuracies are in {run.eval}")
