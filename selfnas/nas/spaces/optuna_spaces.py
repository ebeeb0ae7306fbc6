"""The spaces an Optuna study samples: DARTS cells (CSNAS) and the ResNet / MobileNetV2 variants.

Every space offers ``suggest(trial) -> genotype`` (through ``trial.suggest_categorical`` on
the same choices the space enumerates) and ``model_update(genotype)``, the ``model`` config
section that builds the candidate as a backbone.
"""

from __future__ import annotations

import itertools
from typing import Any

import optuna

from selfnas.config import SearchConfig
from selfnas.errors import ConfigError
from selfnas.models.cell_genotype import CellGenotype
from selfnas.nas.spaces.cells import CellSearchSpace
from selfnas.nas.spaces.macro import MACRO_SPACES

STUDY_SPACES = ("cells", "resnet-variants", "mobilenet-variants")


def suggest_cells(trial: optuna.Trial, space: CellSearchSpace) -> CellGenotype:
    """One cell pair, decomposed into per-node input pairs and ops (what TPE models well)."""
    cells = {}
    for cell in ("normal", "reduce"):
        nodes = []
        for k in range(space.nodes):
            pairs = [f"{i},{j}" for i, j in itertools.combinations(range(2 + k), 2)]
            i, j = (int(v) for v in trial.suggest_categorical(f"{cell}.node{k}.inputs", pairs).split(","))
            a = trial.suggest_categorical(f"{cell}.node{k}.op0", list(space.choice_ops))
            b = trial.suggest_categorical(f"{cell}.node{k}.op1", list(space.choice_ops))
            nodes.append(((a, i), (b, j)))
        cells[cell] = nodes
    return space.genotype(cells["normal"], cells["reduce"])


class CellStudySpace:
    """DARTS cells for a sampler-based study; candidates are ``darts_cells`` networks."""

    name = "cells"

    def __init__(self, search: SearchConfig) -> None:
        self.space = CellSearchSpace(nodes=search.nodes, C=search.cell_width, layers=search.cell_layers)
        self.width, self.layers = search.cell_width, search.cell_layers

    def suggest(self, trial: optuna.Trial) -> CellGenotype:
        return suggest_cells(trial, self.space)

    def model_update(self, genotype: CellGenotype) -> dict[str, Any]:
        kwargs = {"genotype": genotype.to_json(), "width": self.width, "layers": self.layers}
        return {"backbone": "darts_cells", "backbone_kwargs": kwargs}


def study_space(search: SearchConfig) -> Any:
    """The space ``search.space`` names, for a TPE / random / evolutionary study."""
    if search.space_kwargs and search.space not in MACRO_SPACES:
        spaces = ", ".join(MACRO_SPACES)
        raise ConfigError(f"search.space_kwargs sets the grid of {spaces}, not of {search.space}")
    if search.space == "cells":
        return CellStudySpace(search)
    if search.space in STUDY_SPACES:
        try:
            return MACRO_SPACES[search.space](scale=search.scale, **search.space_kwargs)
        except TypeError as exc:  # a key the space does not have
            raise ConfigError(f"search.space_kwargs: {exc}".replace("__init__() ", "")[:300]) from None
    raise ConfigError(
        f"--strategy {search.strategy} searches {', '.join(STUDY_SPACES)}; "
        f"the {search.space!r} space is searched with --strategy darts"
    )
