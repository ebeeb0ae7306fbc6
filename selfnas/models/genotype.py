"""Found architectures as versioned, validated JSON: never ``eval``, never pickle.

A genotype file is::

    {"format": "selfnas-genotype", "version": 1, "space": "heads", "method": "simsiam",
     "projector": {"layers": [{"op": "linear_bn_relu", "dim": 64}, ...]},
     "predictor": {"layers": [...]} | null}

A head genotype found with ``search.layout=nasiam`` also says ``"layout": "nasiam"`` (after
``method``), and loading checks its heads fit NASiam's layout; without the key it is ``selfnas``,
so files written before the key existed load unchanged and selfnas genotypes stay byte-identical.

Loading accepts only that shape: unknown keys, wrong types, unknown op names, absurd
sizes and oversized files are refused with one :class:`GenotypeError` line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfnas.errors import GenotypeError
from selfnas.io import atomic_write_json
from selfnas.methods import METHOD_NAMES
from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.genotype_format import check_header, header
from selfnas.models.heads import HeadSpec, check_layout
from selfnas.models.macro_genotype import MobileNetVariantGenotype, ResNetVariantGenotype

MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class HeadGenotype:
    """The heads found by a head search: a projector and, for SimSiam / BYOL, a predictor, laid out
    as ``layout`` says (``selfnas`` or ``nasiam``: see :func:`selfnas.models.heads.check_layout`)."""

    projector: HeadSpec
    predictor: HeadSpec | None = None
    method: str | None = None
    layout: str = "selfnas"

    space = "heads"

    def __post_init__(self) -> None:
        check_layout(self.layout, self.method, self.projector, self.predictor)

    def to_json(self) -> dict[str, Any]:
        return {
            **header(self.space),
            "method": self.method,
            **({} if self.layout == "selfnas" else {"layout": self.layout}),
            "projector": self.projector.to_json(),
            "predictor": None if self.predictor is None else self.predictor.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> HeadGenotype:
        expected = {"format", "version", "space", "method", "projector", "predictor"}
        check_header(
            data, "heads", expected | ({"layout"} if isinstance(data, dict) and "layout" in data else set())
        )
        method = data["method"]
        if method is not None and method not in METHOD_NAMES:
            raise GenotypeError(f"genotype 'method' must be one of {', '.join(METHOD_NAMES)} or null")
        projector = HeadSpec.from_json(data["projector"])
        predictor = None if data["predictor"] is None else HeadSpec.from_json(data["predictor"])
        return cls(projector, predictor, method, data.get("layout", "selfnas"))


Genotype = HeadGenotype | CellGenotype | ResNetVariantGenotype | MobileNetVariantGenotype
GENOTYPE_SPACES: dict[str, type[Genotype]] = {
    "heads": HeadGenotype,
    "cells": CellGenotype,
    "resnet-variants": ResNetVariantGenotype,
    "mobilenet-variants": MobileNetVariantGenotype,
}


def genotype_from_json(data: Any) -> Genotype:
    """Dispatch on the ``space`` field to the space's validating parser."""
    space = data.get("space") if isinstance(data, dict) else None
    if not isinstance(space, str) or space not in GENOTYPE_SPACES:  # a list is unhashable
        raise GenotypeError(
            f"unknown genotype space {str(space)[:40]!r}; known: {', '.join(GENOTYPE_SPACES)}"
        )
    return GENOTYPE_SPACES[space].from_json(data)


def load_genotype(path: str | Path) -> Genotype:
    path = Path(path)
    if not path.is_file():
        raise GenotypeError(f"genotype file {path} not found")
    if path.stat().st_size > MAX_BYTES:
        raise GenotypeError(f"genotype file {path} is larger than {MAX_BYTES} bytes; not a genotype")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenotypeError(f"genotype file {path} is not valid JSON: {exc}") from None
    return genotype_from_json(data)


def save_genotype(path: str | Path, genotype: Genotype) -> None:
    atomic_write_json(path, genotype.to_json())
