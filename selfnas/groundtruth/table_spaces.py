"""The search spaces a ground-truth table samples, behind one small interface.

A table space offers ``sample(rng) -> genotype`` (uniform over the space), ``size()``,
``enumerate()`` (only for spaces small enough to list), ``apply(config, genotype)`` (the training
config that builds the candidate) and ``describe(genotype)``. Every genotype is a strict,
versioned value (``to_json``), so a table row names its architecture exactly.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from selfnas.config import SearchConfig, TrainConfig
from selfnas.errors import ConfigError
from selfnas.models.backbones import create_backbone
from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.genotype import Genotype, HeadGenotype
from selfnas.models.macro_genotype import ResNetVariantGenotype
from selfnas.nas.spaces.cells import CellSearchSpace
from selfnas.nas.spaces.heads import head_spaces
from selfnas.nas.spaces.macro import ResNetVariantSpace
from selfnas.training.builder import apply_genotype

TABLE_SPACES = ("heads", "cells", "resnet-variants")


class HeadTableSpace:
    """NASiam heads on the configured backbone: one op per searched layer, as ``search`` sets the
    layers, widths and ops (the DARTS head search's own space)."""

    name = "heads"

    def __init__(self, base: TrainConfig, in_channels: int, **search: Any) -> None:
        try:
            self.search = SearchConfig.model_validate({"space": "heads", **search})
        except ValueError as exc:
            raise ConfigError(f"table space heads: {exc}".splitlines()[0]) from None
        backbone = create_backbone(base.model.backbone, in_channels=in_channels, **base.model.backbone_kwargs)
        self.backbone_dim, self.proj_out, self.method = (
            backbone.out_dim,
            base.method.proj_out,
            base.method.name,
        )
        self.projector, self.predictor = head_spaces(
            self.search, self.proj_out, self.backbone_dim, base.method.spec
        )

    def size(self) -> int:
        return self.projector.size * (self.predictor.size if self.predictor else 1)

    def enumerate(self) -> Iterator[HeadGenotype]:
        raise ConfigError("the head space is too large to enumerate; ask for fewer architectures")

    def sample(self, rng: random.Random) -> HeadGenotype:
        ops = self.search.ops
        projector = self.projector.spec(
            [rng.choice(ops) for _ in range(self.projector.layers)], self.backbone_dim
        )
        predictor = None
        if self.predictor is not None:
            chain = [rng.choice(ops) for _ in range(self.predictor.layers)]
            predictor = self.predictor.spec(chain, self.proj_out)
        return HeadGenotype(projector, predictor, self.method, self.search.layout)

    def apply(self, config: TrainConfig, genotype: HeadGenotype) -> TrainConfig:
        return apply_genotype(config, genotype)

    def describe(self, genotype: HeadGenotype) -> str:
        def chain(spec: Any) -> str:
            return ">".join(layer.op.removeprefix("linear_bn_") for layer in spec.layers)

        text = f"proj {chain(genotype.projector)}"
        return text + (f" | pred {chain(genotype.predictor)}" if genotype.predictor else "")


class CellTableSpace:
    """DARTS cells stacked into a ``darts_cells`` backbone of ``width`` channels and ``layers`` cells."""

    name = "cells"

    def __init__(self, base: TrainConfig, in_channels: int, nodes: int = 4, width: int = 8, layers: int = 5):
        self.space = CellSearchSpace(nodes=nodes, C=width, layers=layers)
        self.width, self.layers = width, layers

    def size(self) -> int:
        return self.space.size

    def enumerate(self) -> Iterator[CellGenotype]:
        raise ConfigError("the cell space is too large to enumerate; ask for fewer architectures")

    def sample(self, rng: random.Random) -> CellGenotype:
        return self.space.sample(rng)

    def apply(self, config: TrainConfig, genotype: CellGenotype) -> TrainConfig:
        model = config.model.model_copy(
            update={
                "backbone": "darts_cells",
                "backbone_kwargs": {"width": self.width, "layers": self.layers},
            }
        )
        return apply_genotype(config.model_copy(update={"model": model}), genotype)

    def describe(self, genotype: CellGenotype) -> str:
        def cell(pairs: tuple[tuple[str, int], ...]) -> str:
            return " ".join(f"{op}@{src}" for op, src in pairs)

        return f"normal {cell(genotype.normal)} | reduce {cell(genotype.reduce)}"


class ResNetTableSpace:
    """ResNet / ResNeXt variants of arXiv 2203.08130 (the ``small`` grid unless told otherwise)."""

    name = "resnet-variants"

    def __init__(self, base: TrainConfig, in_channels: int, **kwargs: Any) -> None:
        try:
            self.space = ResNetVariantSpace(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"table space resnet-variants: {exc}") from None

    def size(self) -> int:
        return self.space.size()

    def enumerate(self) -> Iterator[ResNetVariantGenotype]:
        return self.space.enumerate()

    def sample(self, rng: random.Random) -> ResNetVariantGenotype:
        return self.space.sample(rng)

    def apply(self, config: TrainConfig, genotype: ResNetVariantGenotype) -> TrainConfig:
        return apply_genotype(config, genotype)

    def describe(self, genotype: ResNetVariantGenotype) -> str:
        return genotype.describe()


def table_space(name: str, base: TrainConfig, in_channels: int, kwargs: dict[str, Any]) -> Any:
    """The table space ``name`` for candidates of ``base`` on ``in_channels``-channel images."""
    spaces = {"heads": HeadTableSpace, "cells": CellTableSpace, "resnet-variants": ResNetTableSpace}
    if name not in spaces:
        raise ConfigError(f"unknown table space {name!r}; choose one of: {', '.join(TABLE_SPACES)}")
    try:
        return spaces[name](base, in_channels, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"table space {name}: {exc}") from None


def genotype_of(space: Any, genotype: Genotype) -> dict[str, Any]:
    """The row's record of an architecture: its genotype JSON and a short description."""
    return {"genotype": genotype.to_json(), "description": space.describe(genotype)}
