"""The SSL-method records: one frozen record per method, the single home of its plain-data facts.

A record holds what the rest of the package needs to know about a method without importing its
class: the one-line summary (the registry's help), the optimisation defaults, the hand-crafted
heads as recipes and the augmentation preset. Readers:

* :mod:`selfnas.config` -- the allowed ``method.name`` values (:data:`METHOD_NAMES`);
* :mod:`selfnas.ssl.registry` -- help strings and whether a predictor is required;
* :func:`selfnas.models.heads.default_heads` -- builds head specs from the recipes;
* :func:`selfnas.data.augment.augment_preset` -- the paper augmentations;
* :mod:`selfnas.models.genotype`, :mod:`selfnas.training.builder`, the DARTS strategy.

Adding a method: one record here, its class in ``selfnas/ssl/`` and one line in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfnas.errors import RegistryError


@dataclass(frozen=True)
class HeadRecipe:
    """A hand-crafted head as data: ``hidden_layers`` x (``hidden_op`` -> hidden width), then
    ``out_op`` -> the output width. Op names are those of ``selfnas.models.head_ops.HEAD_OPS``;
    the widths come from the config (``method.proj_hidden`` / ``pred_hidden``, ``proj_out``).
    """

    hidden_layers: int
    hidden_op: str
    out_op: str


@dataclass(frozen=True)
class AugmentPreset:
    """Paper augmentation settings of one method; ``jitter`` is (brightness, contrast, saturation, hue).

    :func:`selfnas.data.augment.augment_preset` turns it into per-view configs for an image size.
    """

    jitter: tuple[float, float, float, float]
    jitter_small: tuple[float, float, float, float]  # <= 32 px (SimCLR uses strength 0.5 on CIFAR)
    crop_min: float  # >= 96 px; small images use 0.2 (SimSiam CIFAR practice)
    blur_p: tuple[float, float]  # view 1, view 2; >= 96 px only
    solarize_p: tuple[float, float]


@dataclass(frozen=True)
class MethodRecord:
    """Everything about one SSL method that is plain data.

    ``base_lr`` is the SGD learning rate per 256 images; ``predictor`` is ``None`` for methods
    without a predictor head, and a method with one needs it (:attr:`needs_predictor`).
    """

    name: str
    summary: str
    base_lr: float
    weight_decay: float
    projector: HeadRecipe
    predictor: HeadRecipe | None
    augment: AugmentPreset

    @property
    def needs_predictor(self) -> bool:
        """Whether the method needs a predictor head (it has a hand-crafted one exactly then)."""
        return self.predictor is not None


_MOCO_JITTER = (0.4, 0.4, 0.4, 0.1)
_BYOL_JITTER = (0.4, 0.4, 0.2, 0.1)

#: every SSL method by name, in the order used by messages and choices
METHOD_RECORDS: dict[str, MethodRecord] = {
    record.name: record
    for record in (
        MethodRecord(
            name="simsiam",
            summary="SimSiam: predictor + stop-gradient, no negatives",
            base_lr=0.05,
            weight_decay=5e-4,
            # 2 x (Linear-BN-ReLU) + Linear-BN(no affine); predictor Linear-BN-ReLU + Linear
            projector=HeadRecipe(2, "linear_bn_relu", "linear_bn_noaffine"),
            predictor=HeadRecipe(1, "linear_bn_relu", "linear"),
            augment=AugmentPreset(_MOCO_JITTER, _MOCO_JITTER, 0.2, (0.5, 0.5), (0.0, 0.0)),
        ),
        MethodRecord(
            name="simclr",
            summary="SimCLR: NT-Xent over in-batch negatives (temperature 0.5)",
            base_lr=0.3,
            weight_decay=1e-4,
            projector=HeadRecipe(1, "linear_bn_relu", "linear"),
            predictor=None,
            augment=AugmentPreset((0.8, 0.8, 0.8, 0.2), (0.4, 0.4, 0.4, 0.1), 0.08, (0.5, 0.5), (0.0, 0.0)),
        ),
        MethodRecord(
            name="moco",
            summary="MoCo v2: momentum key encoder + queue of negatives",
            base_lr=0.06,
            weight_decay=5e-4,
            projector=HeadRecipe(1, "linear_relu", "linear"),
            predictor=None,
            augment=AugmentPreset(_MOCO_JITTER, _MOCO_JITTER, 0.2, (0.5, 0.5), (0.0, 0.0)),
        ),
        MethodRecord(
            name="byol",
            summary="BYOL: momentum target network + predictor",
            base_lr=0.06,
            weight_decay=5e-4,
            projector=HeadRecipe(1, "linear_bn_relu", "linear"),
            predictor=HeadRecipe(1, "linear_bn_relu", "linear"),
            augment=AugmentPreset(_BYOL_JITTER, _BYOL_JITTER, 0.08, (1.0, 0.1), (0.0, 0.2)),
        ),
    )
}

#: the SSL method names: ``simsiam``, ``simclr``, ``moco``, ``byol``
METHOD_NAMES: tuple[str, ...] = tuple(METHOD_RECORDS)


def method_record(name: str) -> MethodRecord:
    """The record of method ``name``; an unknown name is one :class:`RegistryError` line."""
    try:
        return METHOD_RECORDS[name]
    except (KeyError, TypeError):
        raise RegistryError(
            f"unknown SSL method {str(name)[:40]!r}; choose one of: {', '.join(METHOD_NAMES)}"
        ) from None
