"""Config -> SSL model: backbone from the registry, heads from specs, the method from its record
(``config.method.spec``). :func:`assemble_method` is the one place a method is created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfnas.config import TrainConfig
from selfnas.data import load_dataset
from selfnas.data.types import DatasetSplits
from selfnas.models.backbones import create_backbone
from selfnas.models.genotype import Genotype, HeadGenotype, load_genotype
from selfnas.models.heads import HeadSpec, default_heads
from selfnas.models.macro_genotype import MobileNetVariantGenotype, ResNetVariantGenotype
from selfnas.ssl.base import SSLMethod
from selfnas.ssl.registry import create_method


def head_specs(config: TrainConfig) -> tuple[HeadSpec, HeadSpec | None]:
    """The configured heads: explicit specs where given, else the method's hand-crafted ones."""
    m = config.method
    projector, predictor = default_heads(m.spec, m.proj_hidden, m.proj_out, m.pred_hidden)
    if m.projector is not None:
        projector = HeadSpec.from_json(m.projector)
    if m.predictor is not None:
        predictor = HeadSpec.from_json(m.predictor)
    if not m.spec.needs_predictor:
        predictor = None
    return projector, predictor


def build_method(config: TrainConfig, in_channels: int) -> SSLMethod:
    backbone = create_backbone(config.model.backbone, in_channels=in_channels, **config.model.backbone_kwargs)
    return assemble_method(config, backbone, *head_specs(config))


def assemble_method(
    config: TrainConfig,
    backbone: nn.Module,
    projector: HeadSpec | nn.Module,
    predictor: HeadSpec | nn.Module | None,
) -> SSLMethod:
    """The configured method (``config.method``: its record, hyper-parameters, ``per_view_bn``) on
    ``backbone`` with these heads (specs, or modules such as a search's supernet heads)."""
    m = config.method
    return create_method(m.spec, backbone, projector, predictor, per_view_bn=m.per_view_bn, **m.hparams)


def resolved_lr(config: TrainConfig) -> tuple[float, float]:
    """(peak LR scaled linearly by batch/256, weight decay), with per-method defaults."""
    defaults = config.method.spec
    base = config.optim.lr if config.optim.lr is not None else defaults.base_lr
    wd = config.optim.weight_decay if config.optim.weight_decay is not None else defaults.weight_decay
    return base * config.optim.batch_size / 256, wd


def load_config_data(config: TrainConfig, **overrides: Any) -> DatasetSplits:
    """The data a config names, split as for training (root, validation fraction, seed, train
    limit; a scenario name in its pretraining view: its unlabeled and train images, no labels);
    ``overrides`` replace any of :func:`selfnas.data.load_dataset`'s arguments."""
    c = config.data
    kwargs: dict[str, Any] = {
        "root": c.root, "download": c.download, "val_fraction": c.val_fraction,
        "seed": config.run.seed, "train_limit": c.train_limit, "pretraining": True,
    }  # fmt: skip
    return load_dataset(c.name, **(kwargs | overrides))


def with_genotype(config: TrainConfig, genotype_path: str | Path) -> TrainConfig:
    """``config`` with the architecture of a genotype file (validated, never eval'd)."""
    return apply_genotype(config, load_genotype(genotype_path))


def apply_genotype(config: TrainConfig, genotype: Genotype) -> TrainConfig:
    """``config`` with ``genotype`` in place: found heads replace the heads, found cells or a
    variant replace the backbone (cells keep the configured ``width`` / ``layers``)."""
    if isinstance(genotype, ResNetVariantGenotype | MobileNetVariantGenotype):  # a whole macro backbone
        update = {"backbone": genotype.backbone, "backbone_kwargs": {"genotype": genotype.to_json()}}
        return config.model_copy(update={"model": config.model.model_copy(update=update)})
    if not isinstance(genotype, HeadGenotype):  # found cells replace the backbone
        kept = {k: v for k, v in config.model.backbone_kwargs.items() if k in ("width", "layers")}
        model = config.model.model_copy(
            update={"backbone": "darts_cells", "backbone_kwargs": {**kept, "genotype": genotype.to_json()}}
        )
        return config.model_copy(update={"model": model})
    method = config.method.model_copy(
        update={
            "projector": genotype.projector.to_json(),
            "predictor": None if genotype.predictor is None else genotype.predictor.to_json(),
        }
    )
    if genotype.predictor is None and config.method.spec.needs_predictor:
        method = method.model_copy(update={"predictor": None})  # the method's own predictor
    return config.model_copy(update={"method": method})


def weight_optimizer(
    model: nn.Module, config: TrainConfig, peak_lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The SSL trainer's optimizer of ``model``'s weights (architecture ``*alpha`` parameters excluded:
    they have their own): SGD with ``optim.momentum`` or AdamW (``optim.optimizer``) at ``peak_lr``,
    ``weight_decay`` on every weight with more than one dimension and none on BatchNorm parameters
    and biases (``ndim <= 1``); with ``optim.fix_predictor_lr`` the ``predictor.*`` parameters get
    their own groups marked ``fixed_lr`` (SimSiam's fixed predictor LR)."""
    fixed = config.optim.fix_predictor_lr
    split: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad and not name.endswith("alpha"):
            key = (p.ndim <= 1, fixed and name.startswith("predictor."))
            split.setdefault(key, []).append(p)
    groups = [
        {"params": split.get((no_decay, pred), []), "fixed_lr": pred,
         "weight_decay": 0.0 if no_decay else weight_decay}
        for pred in ((False, True) if fixed else (False,)) for no_decay in (False, True)
    ]  # fmt: skip
    if config.optim.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=peak_lr)
    return torch.optim.SGD(groups, lr=peak_lr, momentum=config.optim.momentum)
