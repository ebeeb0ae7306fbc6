"""Fine-tuning a pretrained backbone end to end with a linear head on few labels.

The semi-supervised protocol of SimCLR and BYOL, scaled down: a seeded, class-balanced subset of
the train split's labels (:mod:`selfnas.data.label_subset`: ``"1%"``, ``"10%"``, ``"100%"`` or
labels per class), the linear head started at the linear probe of the frozen features (LP-FT:
:mod:`~selfnas.training.probe_head`), SGD with Nesterov momentum, the backbone at a tenth of the
head's LR, a cosine schedule, a few epochs (the ``finetune`` section of the config). The
validation split picks the epoch whose weights are kept; the test split is only reported. The run
directory has the usual layout (:class:`~selfnas.training.supervised.SupervisedTrainer` writes it) plus
``label_subset.json`` (the indices of the labeled images); eval.json's ``finetune`` section holds
``labels`` (budget, seed, counts per class, SHA-256 of the indices), ``val``, ``test`` and the
selected ``epoch``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from selfnas.config import TrainConfig, build_config, typed_overrides
from selfnas.data.label_subset import LabelSubset, label_subset
from selfnas.data.types import DatasetSplits
from selfnas.errors import ConfigError
from selfnas.io import atomic_write_text
from selfnas.rundir import RunDir
from selfnas.training.probe_head import init_head_from_probe
from selfnas.training.supervised import SupervisedTrainer, labeled_splits

LABELS_FILE = "label_subset.json"


def finetune_config(
    source_config: TrainConfig,
    source: str | Path,
    data: str | None = None,
    labels: str | int | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> TrainConfig:
    """The config of a fine-tuning of the run at ``source`` (whose config is ``source_config``): its
    backbone, data (``data`` names another labeled dataset of the same image channels) and run
    settings, a ``finetune`` section, then ``overrides``, then ``data`` and ``labels`` where given (as
    typed flags: they win over ``--set``)."""
    base = source_config.model_dump(mode="json")
    base.update(search=None, supervised=None, finetune={"source": str(source)})
    typed = typed_overrides({"data.name": data, "finetune.labels": labels})
    return build_config(base=base, overrides=[*overrides, *typed])


def check_resume(config: TrainConfig, source: str | Path, data: str | None, labels: str | int | None) -> None:
    """A resumed fine-tuning continues its saved config: a source, data or budget given again must
    match it (ConfigError, one line, when not)."""
    f = config.finetune
    assert f is not None
    if f.source is not None and Path(f.source).resolve() != Path(source).resolve():
        raise ConfigError(f"this run fine-tunes {f.source}, not {source}; resume it with that run")
    if data is not None and data != config.data.name:
        raise ConfigError(f"this run fine-tunes on {config.data.name}; resume it without --data or with that")
    asked = None if labels is None else finetune_config(config, source, labels=labels).finetune
    if asked is not None and asked.labels != f.labels:
        raise ConfigError(
            f"this run fine-tunes with labels {f.labels}; resume it without --labels or with those"
        )


def finetune_data(config: TrainConfig) -> tuple[DatasetSplits, LabelSubset]:
    """The labeled splits with train cut to the class-balanced label subset, and the subset."""
    f = config.finetune
    assert f is not None
    data = labeled_splits(config)
    if data.val is None:
        raise ConfigError(
            "fine-tuning selects its epoch on the validation split; set data.val_fraction above 0"
        )
    subset = label_subset(data.train, f.labels, config.run.seed if f.label_seed is None else f.label_seed)
    return dataclasses.replace(data, train=data.train.subset(subset.index)), subset


def write_label_subset(run: RunDir, subset: LabelSubset) -> Path:
    """``label_subset.json``: the subset's record and its indices into the train split (as
    :func:`~selfnas.training.supervised.labeled_splits` carves and limits it)."""
    record: dict[str, Any] = {**subset.record(), "index": subset.index.tolist()}
    return atomic_write_text(run.path / LABELS_FILE, json.dumps(record) + "\n")


def finetune_trainer(
    config: TrainConfig,
    run: RunDir,
    pretrained: dict[str, torch.Tensor],
    quiet: bool = False,
    argv: list[str] | None = None,
) -> SupervisedTrainer:
    """The trainer of a fine-tuning run: the label subset drawn (and written to the run), the
    backbone initialised from ``pretrained`` (its state dict)."""
    data, subset = finetune_data(config)
    trainer = SupervisedTrainer(
        config,
        run,
        quiet=quiet,
        argv=argv,
        data=data,
        pretrained=pretrained,
        record={"labels": subset.record()},
    )
    assert config.finetune is not None
    if config.finetune.head_init == "probe":
        start = init_head_from_probe(
            trainer.model.backbone, trainer.model.classifier, data, trainer.augment.normalize,
            trainer.device, trainer.precision,
        )  # fmt: skip
        trainer.record.update(head_init="probe", **start)
    else:
        trainer.record["head_init"] = "random"
    write_label_subset(run, subset)
    return trainer
