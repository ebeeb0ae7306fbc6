"""Tiny stand-ins for the macro spaces and the scenarios, for in-process study tests.

The fakes follow the contract of ``selfnas.nas.spaces.macro`` and ``selfnas.data.scenarios``
(space: name, sample, size, enumerate, model_update; scenario: unlabeled / train / test image
sets and num_classes) on the synthetic dataset, so a whole study runs in seconds.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest
import torch

from tests.conftest import TINY

STUDY_TRAIN = [o for o in TINY if not o.startswith("data.")] + ["optim.epochs=0.5"]


@dataclass(frozen=True)
class FakeGenotype:
    width: int
    depth: int

    def to_json(self) -> dict:
        return {"space": "fake", "width": self.width, "depth": self.depth}

    def describe(self) -> str:
        return f"w{self.width} d{self.depth}"


class FakeSpace:
    name = "fake-variants"
    widths, depths = (4, 8), (1, 2)

    def __init__(self, scale: str = "small") -> None:
        self.scale = scale

    def sample(self, rng: random.Random) -> FakeGenotype:
        return FakeGenotype(rng.choice(self.widths), rng.choice(self.depths))

    def size(self) -> int:
        return len(self.widths) * len(self.depths)

    def enumerate(self):
        return [FakeGenotype(w, d) for w, d in itertools.product(self.widths, self.depths)]

    def model_update(self, genotype: FakeGenotype) -> dict:
        return {
            "backbone": "resnet_small",
            "backbone_kwargs": {"width": genotype.width, "depths": [genotype.depth, 1]},
        }


@dataclass(frozen=True)
class FakeScenario:
    name: str
    description: str
    unlabeled: object
    train: object
    test: object

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


def fake_load_scenario(
    name, root=None, seed=0, download=False, limit=None, channels=None, size=None, defined=None
):
    """A fake scenario on the synthetic data (each split capped by ``limit``, as the real ones);
    the user's own folders (``defined``) load for real."""
    from selfnas.data import load_dataset
    from selfnas.data.scenarios import load_scenario, stratified_limit
    from selfnas.data.types import ImageSet
    from selfnas.errors import DatasetError

    if defined and name in defined:
        return load_scenario(name, root, seed, download, limit, channels, size, defined)
    if name not in FAKE_SCENARIOS:
        raise DatasetError(f"unknown scenario {name!r}")
    data = load_dataset("synthetic", val_fraction=0.0)
    train, test = data.train, data.test
    if name == "syn-coarse":  # 4 patterns -> 2 coarse classes
        relabel = lambda s: ImageSet(s.images, s.labels % 2, ("even", "odd"))  # noqa: E731
        train, test = relabel(train), relabel(test)
    if name == "syn-inverted":
        invert = lambda s: ImageSet(255 - s.images, s.labels, s.classes)  # noqa: E731
        train, test = invert(train), invert(test)
    half = len(train) // 2
    unlabeled, train = ImageSet(train.images[:half]), train.subset(torch.arange(half, len(train)))
    cap = lambda split: stratified_limit(split, limit, seed)  # noqa: E731
    return FakeScenario(name, "fake", cap(unlabeled), cap(train), cap(test))


FAKE_SCENARIOS = ("syn-source", "syn-coarse", "syn-inverted")


@pytest.fixture
def fake_study_modules(monkeypatch):
    """Put the fakes where the study reads its spaces and scenarios (``selfnas.studies.plan`` and
    ``selfnas.studies.runner``)."""
    from selfnas.studies import plan, runner

    monkeypatch.setattr(plan, "MACRO_SPACES", {"fake-variants": FakeSpace})
    monkeypatch.setattr(plan, "scenario_names", lambda offline_only=False: list(FAKE_SCENARIOS))
    monkeypatch.setattr(runner, "load_scenario", fake_load_scenario)


@pytest.fixture
def fake_config(fake_study_modules, single_thread):
    """A 2-architecture (+ default) x 2-scenario study config on the fakes."""
    from selfnas.studies.plan import build_study_config

    def make(**options):
        options = {"space": "fake-variants", "archs": 2, "scenarios": ["syn-source", "syn-coarse"]} | options
        return build_study_config(None, options, STUDY_TRAIN)

    return make
