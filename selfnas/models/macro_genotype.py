"""ResNet and MobileNetV2 variants (arXiv 2203.08130) as validated data, with the strict genotype header.

JSON forms (see :mod:`selfnas.models.genotype_format` for the header)::

    {"format": "selfnas-genotype", "version": 1, "space": "resnet-variants", "scale": "small",
     "block": "basic", "blocks": [2, 1, 3], "width_per_group": 16, "groups": 2}

    {"format": "selfnas-genotype", "version": 1, "space": "mobilenet-variants", "scale": "small",
     "repeats": [1, 2, 3, 2, 1, 3, 1], "width_mult": 1.5}

``scale`` is ``"small"`` (CIFAR-like stem, 28-32 px, CPU-fast) or ``"full"`` (ImageNet stem).
A ResNet variant has one ``blocks`` count per stage (3 stages small, 4 full); a MobileNetV2
variant has one ``repeats`` count for each of its 7 inverted-residual stages. What the fields
mean for the network is documented in :mod:`selfnas.models.variants`.

The parser accepts more than the default search grids (so ResNet-50 ``[3, 4, 6, 3]`` or
ResNeXt-50 32x4d are expressible) but refuses, with one :class:`GenotypeError` line, anything
else: unknown or missing keys, bools for ints, unknown block types, out-of-range or absurd
sizes, NaN, and strings that are not one of the known names (code is never run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from selfnas.errors import GenotypeError
from selfnas.models.genotype_format import check_header, header, is_int, short

SCALES = ("small", "full")
BLOCK_TYPES = ("basic", "bottleneck")
#: ResNet stages per scale, and the residual width of the first stage (it doubles per stage)
RESNET_STAGES = {"small": 3, "full": 4}
RESNET_BASE_WIDTH = {"small": 16, "full": 64}
MOBILENET_STAGES = 7
#: absurd-size guards: far above any network in the paper's spaces (ResNet-152 has 36 blocks
#: in a stage; the widest default 3x3 conv of stage 0 is 256 x 8 = 2048 channels)
MAX_BLOCKS = 64
MAX_GROUP_WIDTH = 2048
MAX_REPEATS = 16
MIN_WIDTH_MULT, MAX_WIDTH_MULT = 0.25, 4.0


def _check_choice(space: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise GenotypeError(
            f"{space} genotype {key!r} must be one of {', '.join(choices)}, got {short(value)}"
        )
    return value


def _check_int(space: str, key: str, value: Any, low: int, high: int) -> int:
    if not is_int(value) or not low <= value <= high:
        raise GenotypeError(f"{space} genotype {key!r} must be an int in {low}..{high}, got {short(value)}")
    return value


def _check_counts(space: str, key: str, value: Any, length: int, high: int) -> tuple[int, ...]:
    """A list (or tuple) of exactly ``length`` ints in 1..high, returned as a tuple."""
    if not isinstance(value, list | tuple) or len(value) != length:
        shown = f"a list of {len(value)}" if isinstance(value, list | tuple) else short(value)
        raise GenotypeError(
            f"{space} genotype {key!r} must be a list of {length} ints in 1..{high}, got {shown}"
        )
    return tuple(_check_int(space, f"{key}[{i}]", v, 1, high) for i, v in enumerate(value))


def _ints(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values)


def _scaled(scale: str, text: str) -> str:
    """``text``, with `` full`` appended for the full-scale grid."""
    return text if scale == "small" else f"{text} full"


def _variant_to_json(genotype: Any) -> dict[str, Any]:
    """The header, then the genotype's ``json_fields`` in order (tuples as lists)."""
    values = {f: getattr(genotype, f) for f in genotype.json_fields}
    return {
        **header(genotype.space),
        **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()},
    }


def _variant_from_json(cls: Any, data: Any) -> Any:
    """A validated ``cls`` genotype from its JSON object: exactly the header and ``json_fields``."""
    check_header(data, cls.space, {"format", "version", "space", *cls.json_fields})
    return cls(**{f: data[f] for f in cls.json_fields})


@dataclass(frozen=True)
class ResNetVariantGenotype:
    """A ResNet / ResNeXt variant: block type, blocks per stage, width per group and groups.

    The 3x3 conv of stage ``i`` is ``width_per_group * groups * 2**i`` wide and grouped;
    ``groups`` must divide the first stage's residual width (16 small, 64 full).
    """

    block: str
    blocks: tuple[int, ...]
    width_per_group: int
    groups: int = 1
    scale: str = "small"

    space: ClassVar[str] = "resnet-variants"
    backbone: ClassVar[str] = "resnet_variant"
    json_fields: ClassVar[tuple[str, ...]] = ("scale", "block", "blocks", "width_per_group", "groups")

    def __post_init__(self) -> None:
        name = "resnet-variants"
        _check_choice(name, "scale", self.scale, SCALES)
        _check_choice(name, "block", self.block, BLOCK_TYPES)
        blocks = _check_counts(name, "blocks", self.blocks, RESNET_STAGES[self.scale], MAX_BLOCKS)
        object.__setattr__(self, "blocks", blocks)
        _check_int(name, "width_per_group", self.width_per_group, 1, MAX_GROUP_WIDTH)
        base = RESNET_BASE_WIDTH[self.scale]
        _check_int(name, "groups", self.groups, 1, base)
        if base % self.groups:
            raise GenotypeError(
                f"{name} genotype 'groups' {self.groups} must divide {base}, the {self.scale} stem width"
            )
        if self.width_per_group * self.groups > MAX_GROUP_WIDTH:
            raise GenotypeError(
                f"{name} genotype: width_per_group x groups = {self.width_per_group * self.groups} "
                f"is too wide; the most allowed is {MAX_GROUP_WIDTH}"
            )

    def describe(self) -> str:
        """Short and human: ``resnet basic [2,1,3] w16 g2`` (`` full`` appended at full scale)."""
        return _scaled(
            self.scale, f"resnet {self.block} [{_ints(self.blocks)}] w{self.width_per_group} g{self.groups}"
        )

    to_json = _variant_to_json
    from_json = classmethod(_variant_from_json)


@dataclass(frozen=True)
class MobileNetVariantGenotype:
    """A MobileNetV2 variant: inverted-residual repeats for each of the 7 stages and a width multiplier."""

    repeats: tuple[int, ...]
    width_mult: float = 1.0
    scale: str = "small"

    space: ClassVar[str] = "mobilenet-variants"
    backbone: ClassVar[str] = "mobilenet_variant"
    json_fields: ClassVar[tuple[str, ...]] = ("scale", "repeats", "width_mult")

    def __post_init__(self) -> None:
        name = "mobilenet-variants"
        _check_choice(name, "scale", self.scale, SCALES)
        object.__setattr__(
            self, "repeats", _check_counts(name, "repeats", self.repeats, MOBILENET_STAGES, MAX_REPEATS)
        )
        mult = self.width_mult
        if (
            isinstance(mult, bool)
            or not isinstance(mult, int | float)
            or not math.isfinite(mult)
            or not MIN_WIDTH_MULT <= mult <= MAX_WIDTH_MULT
        ):
            raise GenotypeError(
                f"{name} genotype 'width_mult' must be a number in {MIN_WIDTH_MULT:g}..{MAX_WIDTH_MULT:g}, "
                f"got {short(mult)}"
            )
        object.__setattr__(self, "width_mult", float(mult))

    def describe(self) -> str:
        """Short and human: ``mobilenet [1,2,3,2,1,3,1] x1.5`` (`` full`` appended at full scale)."""
        return _scaled(self.scale, f"mobilenet [{_ints(self.repeats)}] x{self.width_mult:g}")

    to_json = _variant_to_json
    from_json = classmethod(_variant_from_json)


MacroGenotype = ResNetVariantGenotype | MobileNetVariantGenotype
