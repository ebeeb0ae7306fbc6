"""The SSL-method specs: one frozen record per method, the single home of everything about it
that is plain data.

A record holds what the rest of the package needs to know about a method without importing its
class: the one-line summary (the registry's help), the class that implements it (by its name in
``selfnas/ssl/``; the class points back at the record as ``spec``), its hyper-parameters with their
types and defaults, the optimisation defaults, how its reference code normalises the two views,
the hand-crafted heads as recipes, NASiam's searched heads and the augmentation preset.

A method's name is resolved into its record once, where the config is read
(:attr:`selfnas.config.MethodConfig.spec`); code below passes the record. Readers:

* :mod:`selfnas.config` -- the allowed ``method.name`` values (:data:`METHOD_NAMES`) and the spec;
* :mod:`selfnas.ssl` -- each class's ``spec``; :func:`selfnas.ssl.registry.create_method` fills in
  the hyper-parameters (:meth:`MethodRecord.hparams`);
* :func:`selfnas.models.heads.default_heads` -- builds head specs from the recipes;
* :func:`selfnas.nas.spaces.heads.head_spaces` -- NASiam's searched heads;
* :func:`selfnas.data.augment.augment_preset` -- the paper augmentations;
* :mod:`selfnas.models.genotype`, :mod:`selfnas.training.builder`, the DARTS strategy.

Adding a method: one record here, its class in ``selfnas/ssl/`` and one line in the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from selfnas.errors import ConfigError, RegistryError


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
class LayoutHead:
    """One searched head of NASiam's layout: ``layers`` searched layers, then the fixed ``final_op``
    (``None``: the last searched layer maps to the head's output itself). With ``bottleneck`` the
    searched layers are ``in_dim // 4`` wide (NASiam's 2048 -> 512), else ``in_dim``."""

    layers: int
    final_op: str | None
    bottleneck: bool = False

    def hidden(self, in_dim: int) -> int:
        return max(1, in_dim // 4) if self.bottleneck else in_dim

    @property
    def total_layers(self) -> int:
        return self.layers + (self.final_op is not None)


@dataclass(frozen=True)
class HyperParameter:
    """One hyper-parameter of a method's class: its keyword, type (``int`` or ``float``) and default."""

    name: str
    kind: type[int] | type[float]
    default: int | float

    def typed(self, value: object, method: str) -> int | float:
        """``value`` as this parameter's type; a value of another type is one :class:`ConfigError` line."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and self.kind is float:
            return float(value)  # type: ignore[arg-type]
        if number and float(value).is_integer():  # type: ignore[arg-type]
            return int(value)  # type: ignore[arg-type]
        kind = "an integer" if self.kind is int else "a number"
        raise ConfigError(
            f"bad hyper-parameters for {method}: {self.name} must be {kind}, got {str(value)[:40]!r}"
        )


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
    """Everything about one SSL method that is plain data: the method's spec.

    ``class_name`` is the class in ``selfnas/ssl/`` that implements it; ``hyper_parameters`` are
    its class's keywords with their types and defaults. ``base_lr`` is the SGD learning rate per
    256 images; ``per_view_bn`` whether the reference code encodes each view in a forward of its
    own (BatchNorm statistics per view). ``predictor`` is ``None`` for methods without a predictor
    head, and a method with one needs it (:attr:`needs_predictor`). ``nasiam_heads`` are the
    (projector, predictor) that NASiam's layout searches.
    """

    name: str
    summary: str
    class_name: str
    hyper_parameters: tuple[HyperParameter, ...]
    base_lr: float
    weight_decay: float
    per_view_bn: bool
    projector: HeadRecipe
    predictor: HeadRecipe | None
    nasiam_heads: tuple[LayoutHead, LayoutHead | None]
    augment: AugmentPreset

    @property
    def needs_predictor(self) -> bool:
        """Whether the method needs a predictor head (it has a hand-crafted one exactly then)."""
        return self.predictor is not None

    @property
    def defaults(self) -> dict[str, int | float]:
        """The hyper-parameters' defaults by keyword."""
        return {p.name: p.default for p in self.hyper_parameters}

    def hparams(self, given: Mapping[str, object]) -> dict[str, int | float]:
        """Every hyper-parameter of the method, typed: ``given`` over the defaults. A keyword the
        method does not have, or a value of the wrong type, is one :class:`ConfigError` line."""
        known = {p.name: p for p in self.hyper_parameters}
        unknown = [k for k in given if k not in known]
        if unknown:
            names = ", ".join(known) or "none"
            raise ConfigError(
                f"bad hyper-parameters for {self.name}: it has no {str(unknown[0])[:40]!r} "
                f"(its hyper-parameters: {names}); fix method.hparams"
            )
        return self.defaults | {k: known[k].typed(v, self.name) for k, v in given.items()}


_MOCO_JITTER = (0.4, 0.4, 0.4, 0.1)
_BYOL_JITTER = (0.4, 0.4, 0.2, 0.1)

# NASiam's searched heads, as aheuillet/NASiam's builders make them: SimSiam
# ``SearchCell(prev_dim, num_layers=6)`` then Linear + BN without affine, predictor
# ``SearchCell(dim, hidden_dim=pred_dim, num_layers=4)`` (2048 -> 512 -> 2048); MoCo
# ``SearchCell(dim_mlp, num_layers=4)`` then the encoder's Linear; SimCLR
# ``SearchCell(2048, hidden_dim=512, out_dim=128, num_layers=6)``. BYOL is not in NASiam's code:
# it mirrors SimSiam and ends in BYOL's own Linear.
_NASIAM_PREDICTOR = LayoutHead(4, None, bottleneck=True)

SIMSIAM = MethodRecord(
    name="simsiam",
    summary="SimSiam: predictor + stop-gradient, no negatives",
    class_name="SimSiam",
    hyper_parameters=(),
    base_lr=0.05,
    weight_decay=5e-4,
    per_view_bn=True,
    # 2 x (Linear-BN-ReLU) + Linear-BN(no affine); predictor Linear-BN-ReLU + Linear
    projector=HeadRecipe(2, "linear_bn_relu", "linear_bn_noaffine"),
    predictor=HeadRecipe(1, "linear_bn_relu", "linear"),
    nasiam_heads=(LayoutHead(6, "linear_bn_noaffine"), _NASIAM_PREDICTOR),
    augment=AugmentPreset(_MOCO_JITTER, _MOCO_JITTER, 0.2, (0.5, 0.5), (0.0, 0.0)),
)
SIMCLR = MethodRecord(
    name="simclr",
    summary="SimCLR: NT-Xent over in-batch negatives (temperature 0.5)",
    class_name="SimCLR",
    hyper_parameters=(HyperParameter("temperature", float, 0.5),),
    base_lr=0.3,
    weight_decay=1e-4,
    # google-research/simclr (tf2/model.py) encodes both views as one batch: BatchNorm over all of it
    per_view_bn=False,
    projector=HeadRecipe(1, "linear_bn_relu", "linear"),
    predictor=None,
    nasiam_heads=(LayoutHead(6, None, bottleneck=True), None),
    augment=AugmentPreset((0.8, 0.8, 0.8, 0.2), (0.4, 0.4, 0.4, 0.1), 0.08, (0.5, 0.5), (0.0, 0.0)),
)
MOCO = MethodRecord(
    name="moco",
    summary="MoCo v2: momentum key encoder + queue of negatives",
    class_name="MoCo",
    hyper_parameters=(
        HyperParameter("temperature", float, 0.2),
        HyperParameter("momentum", float, 0.99),
        HyperParameter("queue_size", int, 4096),
    ),
    base_lr=0.06,
    weight_decay=5e-4,
    per_view_bn=True,
    projector=HeadRecipe(1, "linear_relu", "linear"),
    predictor=None,
    nasiam_heads=(LayoutHead(4, "linear"), None),
    augment=AugmentPreset(_MOCO_JITTER, _MOCO_JITTER, 0.2, (0.5, 0.5), (0.0, 0.0)),
)
BYOL = MethodRecord(
    name="byol",
    summary="BYOL: momentum target network + predictor",
    class_name="BYOL",
    hyper_parameters=(HyperParameter("momentum", float, 0.99),),
    base_lr=0.06,
    weight_decay=5e-4,
    per_view_bn=True,
    projector=HeadRecipe(1, "linear_bn_relu", "linear"),
    predictor=HeadRecipe(1, "linear_bn_relu", "linear"),
    nasiam_heads=(LayoutHead(6, "linear"), _NASIAM_PREDICTOR),
    augment=AugmentPreset(_BYOL_JITTER, _BYOL_JITTER, 0.08, (1.0, 0.1), (0.0, 0.2)),
)

#: every SSL method by name, in the order used by messages and choices
METHOD_RECORDS: dict[str, MethodRecord] = {r.name: r for r in (SIMSIAM, SIMCLR, MOCO, BYOL)}

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
