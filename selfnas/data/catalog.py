"""Every data name in one lookup: :func:`load_dataset` is what ``--data`` and ``data.name`` reach.

A name is looked up in the datasets registry (:data:`selfnas.data.datasets.DATASETS`) first, then
in the scenarios registry (:data:`selfnas.data.scenarios.SCENARIOS`); this module is the one that
knows both (the scenarios are built on the datasets, so neither registry can know the other).
A name held by both, such as ``fashion-mnist``, ``digits`` or ``cifar10``, means the dataset.

A scenario-only name (``fashion-rotated``, ``fashion-coarse``, ...) comes as one of the scenario's
two views (see :mod:`selfnas.data.scenarios`), both normalised with the same mean and std:

- ``pretraining=True``, what training and search ask for (through
  :func:`selfnas.training.builder.load_config_data`): ``train`` is the scenario's unlabeled and
  train images without labels, less a seeded ``val_fraction`` kept as an unlabeled ``val`` for
  label-free search scores; ``test`` is the labeled test split. SSL sees every image it may.
- ``pretraining=False`` (the default: evaluation, ``selfnas eval --data``, a plain lookup):
  ``train`` is the scenario's labeled train split (the probe's), ``test`` its test split, no
  ``val``: the probe is reported on ``test``, as in a study.

``train_limit`` caps ``train`` in either view (a seeded subset); ``@SIZE`` resizes every split;
a scenario takes no ``:PATH`` (its files are found under ``--data-root``).

A scenario of the user's own folder is written where a name goes, ``NAME=imagefolder:PATH[@SIZE]``
(see :func:`selfnas.data.scenarios.parse_scenario_definition`), and comes in the same two views:
``selfnas search --data pets=imagefolder:~/pets`` pretrains on the folder's unlabeled and train
images, ``selfnas eval RUN --data pets=imagefolder:~/pets`` probes its train and reports its test,
just as ``selfnas study --scenario pets=imagefolder:~/pets`` does.
"""

from __future__ import annotations

import dataclasses

from selfnas.data.datasets import DATASETS, MAX_SIZE, MIN_SIZE, dataset_names, load_registered, parse_spec
from selfnas.data.scenarios import (
    SCENARIOS,
    Scenario,
    is_scenario_definition,
    load_scenario,
    parse_scenario_definition,
    pretraining_splits,
    probe_splits,
    scenario_names,
)
from selfnas.data.splits import limit_images
from selfnas.data.types import DatasetSplits
from selfnas.errors import DatasetError, RegistryError

SCENARIO_PREFIX = "scenario: "


def scenario_only_names() -> list[str]:
    """Scenario names that are no dataset name, in the scenarios' own order."""
    return [name for name in scenario_names() if name not in DATASETS]


def data_names() -> list[str]:
    """Every name :func:`load_dataset` takes: the datasets (sorted), then the scenario-only names."""
    return dataset_names() + scenario_only_names()


def describe_data(name: str) -> str:
    """The one-line help of a data name; a scenario's starts with ``scenario: ``."""
    if name in DATASETS or name not in SCENARIOS:
        return DATASETS.describe(name)  # an unknown name: the registry's error
    return SCENARIO_PREFIX + SCENARIOS.describe(name)


def load_dataset(
    spec: str,
    root: str | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_limit: int | None = None,
    pretraining: bool = False,
) -> DatasetSplits:
    """The data ``spec`` names, as train / val / test.

    A dataset spec loads as :func:`selfnas.data.datasets.load_registered` says (``pretraining``
    changes nothing); a scenario name, or a ``NAME=imagefolder:PATH`` of the user's, as the view
    ``pretraining`` picks (see the module doc), loaded with ``seed``. Raises RegistryError (one
    line, both registries' names) for an unknown name, DatasetError for a bad spec or missing
    files, ConfigError for a bad limit or fraction or a bad ``NAME=`` definition.
    """
    if is_scenario_definition(spec):
        name, folder = parse_scenario_definition(spec)
        scenario = load_scenario(name, root=root, seed=seed, download=download, defined={name: folder})
        return _view(scenario, spec, val_fraction, seed, train_limit, pretraining)
    parsed = parse_spec(spec)
    if parsed.name in DATASETS:
        return load_registered(
            spec, root=root, download=download, val_fraction=val_fraction, seed=seed, train_limit=train_limit
        )
    if parsed.name not in SCENARIOS:
        raise RegistryError(
            f"unknown dataset {parsed.name!r}; choose one of: {', '.join(dataset_names())}; "
            f"or a scenario: {', '.join(scenario_only_names())}"
        )
    if parsed.path is not None:
        raise DatasetError(f"scenario {parsed.name} takes no path; give its folder with --data-root DIR")
    if parsed.size is not None and not MIN_SIZE <= parsed.size <= MAX_SIZE:
        raise DatasetError(f"image size @{parsed.size} must be between {MIN_SIZE} and {MAX_SIZE} pixels")
    scenario = load_scenario(parsed.name, root=root, seed=seed, download=download, size=parsed.size)
    return _view(scenario, spec, val_fraction, seed, train_limit, pretraining)


def _view(
    scenario: Scenario, spec: str, val_fraction: float, seed: int, train_limit: int | None, pretraining: bool
) -> DatasetSplits:
    """The pretraining or the probe view of ``scenario``, named ``spec``, train capped by ``train_limit``."""
    splits = pretraining_splits(scenario, val_fraction, seed) if pretraining else probe_splits(scenario)
    return dataclasses.replace(splits, name=spec, train=limit_images(splits.train, train_limit, seed))
