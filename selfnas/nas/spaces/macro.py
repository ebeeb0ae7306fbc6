"""The macro search spaces of arXiv 2203.08130: ResNet and MobileNetV2 variants.

Each space is a grid of choices (constructor parameters, defaulting to the paper's grid at
full scale and a CPU-sized one at small scale) with one interface, shared by the Optuna
study (``suggest``), ``selfnas study`` (``sample``) and exhaustive use (``enumerate``)::

    space = ResNetVariantSpace(scale="small")
    space.name                      # "resnet-variants"
    space.suggest(trial)            # trial.suggest_categorical("stage0.blocks", ...), ...
    space.sample(random.Random(0))  # uniform over the space's genotypes
    space.size(), space.enumerate() # the exact count, and every genotype once
    space.model_update(genotype)    # {"backbone": "resnet_variant", "backbone_kwargs": {...}}

Default grids (``scale="small"`` | ``"full"``):

- ResNet: block basic | bottleneck; blocks per stage {1,2,3} (3 stages) | {2,3,4} (4 stages),
  bottlenecks one deeper: {1,2,3,4} | {2,3,4,6} (ResNet-50's deepest stage has 6); width per
  group {2,4,8,16} | {32,64,128,256}; groups {1,2,4,8}. 1,456 | 5,392 genotypes. (A stage's
  3x3 convs are width x groups x 2^stage wide: at most 512 at small scale, CPU-sized.)
- MobileNetV2: repeats per stage (7 stages) {1,2,3} | {1,2,3,4}; width multiplier
  {1.0,1.5,2.0,2.5,3.0}. 10,935 | 81,920 genotypes.

Optuna parameter names are stable: ``block``, ``stage{i}.blocks`` (``stage{i}.bottleneck_blocks``
for bottlenecks when their depth choices differ from the basic ones), ``width_per_group``,
``groups``; ``stage{i}.repeats``, ``width_mult``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import optuna

from selfnas.errors import ConfigError, GenotypeError
from selfnas.models.macro_genotype import (
    BLOCK_TYPES,
    MOBILENET_STAGES,
    RESNET_STAGES,
    SCALES,
    MobileNetVariantGenotype,
    ResNetVariantGenotype,
)

T = TypeVar("T")

RESNET_DEFAULTS: dict[str, dict[str, tuple[int, ...]]] = {
    "small": {"blocks": (1, 2, 3), "bottleneck_blocks": (1, 2, 3, 4), "widths": (2, 4, 8, 16)},
    "full": {"blocks": (2, 3, 4), "bottleneck_blocks": (2, 3, 4, 6), "widths": (32, 64, 128, 256)},
}
RESNET_GROUPS = (1, 2, 4, 8)
MOBILENET_REPEATS = {"small": (1, 2, 3), "full": (1, 2, 3, 4)}
WIDTH_MULTS = (1.0, 1.5, 2.0, 2.5, 3.0)


def _scale(space: str, scale: Any) -> str:
    if not isinstance(scale, str) or scale not in SCALES:
        raise ConfigError(f"{space} space: scale must be one of {', '.join(SCALES)}, got {scale!r}"[:200])
    return scale


def _choices(space: str, key: str, values: Sequence[T] | None, default: Sequence[T]) -> tuple[T, ...]:
    """The choice list, duplicates dropped (so ``size`` counts distinct genotypes), never empty."""
    chosen = tuple(dict.fromkeys(default if values is None else values))
    if isinstance(values, str | bytes) or not chosen:
        raise ConfigError(f"{space} space: {key} must be a non-empty list of choices, got {values!r}"[:200])
    return chosen


class ResNetVariantSpace:
    """ResNet / ResNeXt variants: block type, blocks per stage, width per group, groups."""

    name = "resnet-variants"

    def __init__(
        self,
        scale: str = "small",
        blocks: Sequence[int] | None = None,
        bottleneck_blocks: Sequence[int] | None = None,
        widths: Sequence[int] | None = None,
        groups: Sequence[int] | None = None,
        block_types: Sequence[str] = BLOCK_TYPES,
    ) -> None:
        self.scale = _scale(self.name, scale)
        defaults = RESNET_DEFAULTS[self.scale]
        self.stages = RESNET_STAGES[self.scale]
        self.block_types = _choices(self.name, "block_types", block_types, BLOCK_TYPES)
        basic = _choices(self.name, "blocks", blocks, defaults["blocks"])
        deep = _choices(self.name, "bottleneck_blocks", bottleneck_blocks, defaults["bottleneck_blocks"])
        self.depths = {"basic": basic, "bottleneck": deep}
        self.widths = _choices(self.name, "widths", widths, defaults["widths"])
        self.groups = _choices(self.name, "groups", groups, RESNET_GROUPS)
        try:  # every choice must make a valid genotype: check each one on its own
            for block in self.block_types:
                for depth in self.depths.get(block, (1,)):
                    self.genotype(block, [depth] * self.stages, self.widths[0], self.groups[0])
            for width, group in itertools.product(self.widths, self.groups):
                self.genotype(self.block_types[0], [1] * self.stages, width, group)
        except GenotypeError as exc:
            raise ConfigError(f"{self.name} space: a choice is invalid: {exc}") from None

    def genotype(self, block: str, blocks: Sequence[int], width: int, groups: int) -> ResNetVariantGenotype:
        return ResNetVariantGenotype(block, tuple(blocks), width, groups, self.scale)

    def _depth_param(self, block: str, stage: int) -> str:
        shared = block == "basic" or self.depths["bottleneck"] == self.depths["basic"]
        return f"stage{stage}.blocks" if shared else f"stage{stage}.bottleneck_blocks"

    def _count(self, block: str) -> int:
        return len(self.depths[block]) ** self.stages * len(self.widths) * len(self.groups)

    def size(self) -> int:
        """The exact number of distinct genotypes."""
        return sum(self._count(block) for block in self.block_types)

    def enumerate(self) -> Iterator[ResNetVariantGenotype]:
        """Every genotype once, in a fixed order."""
        for block in self.block_types:
            product = itertools.product(
                itertools.product(self.depths[block], repeat=self.stages), self.widths, self.groups
            )
            for blocks, width, group in product:
                yield self.genotype(block, blocks, width, group)

    def sample(self, rng: random.Random) -> ResNetVariantGenotype:
        """A uniformly random genotype (block types weighted by how many genotypes each has)."""
        pick = rng.randrange(self.size())
        block = self.block_types[-1]
        for candidate in self.block_types:
            if pick < self._count(candidate):
                block = candidate
                break
            pick -= self._count(candidate)
        blocks = [rng.choice(self.depths[block]) for _ in range(self.stages)]
        return self.genotype(block, blocks, rng.choice(self.widths), rng.choice(self.groups))

    def suggest(self, trial: optuna.Trial) -> ResNetVariantGenotype:
        block = str(trial.suggest_categorical("block", list(self.block_types)))
        blocks = [
            int(trial.suggest_categorical(self._depth_param(block, i), list(self.depths[block])))
            for i in range(self.stages)
        ]
        width = int(trial.suggest_categorical("width_per_group", list(self.widths)))
        groups = int(trial.suggest_categorical("groups", list(self.groups)))
        return self.genotype(block, blocks, width, groups)

    def model_update(self, genotype: ResNetVariantGenotype) -> dict[str, Any]:
        return {"backbone": genotype.backbone, "backbone_kwargs": {"genotype": genotype.to_json()}}


class MobileNetVariantSpace:
    """MobileNetV2 variants: inverted-residual repeats for each of the 7 stages, width multiplier."""

    name = "mobilenet-variants"

    def __init__(
        self,
        scale: str = "small",
        repeats: Sequence[int] | None = None,
        width_mults: Sequence[float] | None = None,
    ) -> None:
        self.scale = _scale(self.name, scale)
        self.stages = MOBILENET_STAGES
        self.repeats = _choices(self.name, "repeats", repeats, MOBILENET_REPEATS[self.scale])
        mults = _choices(self.name, "width_mults", width_mults, WIDTH_MULTS)
        try:
            for r in self.repeats:
                self.genotype([r] * self.stages, mults[0])
            self.width_mults = tuple(
                dict.fromkeys(self.genotype([1] * self.stages, m).width_mult for m in mults)
            )
        except GenotypeError as exc:
            raise ConfigError(f"{self.name} space: a choice is invalid: {exc}") from None

    def genotype(self, repeats: Sequence[int], width_mult: float) -> MobileNetVariantGenotype:
        return MobileNetVariantGenotype(tuple(repeats), width_mult, self.scale)

    def size(self) -> int:
        """The exact number of distinct genotypes."""
        return len(self.repeats) ** self.stages * len(self.width_mults)

    def enumerate(self) -> Iterator[MobileNetVariantGenotype]:
        """Every genotype once, in a fixed order."""
        for repeats in itertools.product(self.repeats, repeat=self.stages):
            for mult in self.width_mults:
                yield self.genotype(repeats, mult)

    def sample(self, rng: random.Random) -> MobileNetVariantGenotype:
        """A uniformly random genotype."""
        repeats = [rng.choice(self.repeats) for _ in range(self.stages)]
        return self.genotype(repeats, rng.choice(self.width_mults))

    def suggest(self, trial: optuna.Trial) -> MobileNetVariantGenotype:
        repeats = [
            int(trial.suggest_categorical(f"stage{i}.repeats", list(self.repeats)))
            for i in range(self.stages)
        ]
        return self.genotype(repeats, float(trial.suggest_categorical("width_mult", list(self.width_mults))))

    def model_update(self, genotype: MobileNetVariantGenotype) -> dict[str, Any]:
        return {"backbone": genotype.backbone, "backbone_kwargs": {"genotype": genotype.to_json()}}


MacroSpace = ResNetVariantSpace | MobileNetVariantSpace
MACRO_SPACES: dict[str, type[ResNetVariantSpace] | type[MobileNetVariantSpace]] = {
    "resnet-variants": ResNetVariantSpace,
    "mobilenet-variants": MobileNetVariantSpace,
}
