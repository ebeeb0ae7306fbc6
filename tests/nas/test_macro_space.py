"""The ResNet / MobileNetV2 variant spaces: counts, enumeration, sampling and Optuna suggestions."""

from __future__ import annotations

import random
from collections import Counter

import optuna
import pytest

from selfnas.errors import ConfigError
from selfnas.models.macro_genotype import MobileNetVariantGenotype, ResNetVariantGenotype
from selfnas.nas.spaces.macro import MACRO_SPACES, MobileNetVariantSpace, ResNetVariantSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_registry_and_names():
    assert MACRO_SPACES == {
        "resnet-variants": ResNetVariantSpace,
        "mobilenet-variants": MobileNetVariantSpace,
    }
    for name, cls in MACRO_SPACES.items():
        assert cls().name == name and cls(scale="full").name == name


@pytest.mark.parametrize(
    ("space", "size"),
    [
        (ResNetVariantSpace(), 3**3 * 16 + 4**3 * 16),
        (ResNetVariantSpace("full"), 3**4 * 16 + 4**4 * 16),
        (MobileNetVariantSpace(), 3**7 * 5),
        (ResNetVariantSpace("full", blocks=[2, 3], bottleneck_blocks=[2, 3], widths=[64], groups=[1, 8]), 64),
        (MobileNetVariantSpace("full", repeats=[1, 4], width_mults=[1.0, 1, 2.0]), 2**7 * 2),  # 1 == 1.0
    ],
)
def test_enumerate_yields_every_genotype_once(space, size):
    genotypes = list(space.enumerate())
    assert space.size() == size == len(genotypes) == len(set(genotypes))
    assert all(g.scale == space.scale for g in genotypes)


def test_full_mobilenet_size_without_enumerating():
    assert MobileNetVariantSpace("full").size() == 4**7 * 5


def test_default_grids_follow_the_paper():
    small, full = ResNetVariantSpace(), ResNetVariantSpace("full")
    assert small.depths == {"basic": (1, 2, 3), "bottleneck": (1, 2, 3, 4)} and small.stages == 3
    assert full.depths == {"basic": (2, 3, 4), "bottleneck": (2, 3, 4, 6)} and full.stages == 4
    assert small.widths == (2, 4, 8, 16) and full.widths == (32, 64, 128, 256)
    assert small.groups == full.groups == (1, 2, 4, 8)
    assert MobileNetVariantSpace().width_mults == (1.0, 1.5, 2.0, 2.5, 3.0)
    assert MobileNetVariantSpace().repeats == (1, 2, 3)


@pytest.mark.parametrize("space", [ResNetVariantSpace(), MobileNetVariantSpace(), ResNetVariantSpace("full")])
def test_sample_is_seeded_and_inside_the_space(space):
    first = [space.sample(random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = random.Random(0)
    samples = [space.sample(rng) for _ in range(200)]
    if space.size() < 20_000:
        everything = set(space.enumerate())
        assert all(g in everything for g in samples)
    assert len(set(samples)) > 150  # a large space: few repeats


def test_sample_is_uniform_over_block_types():
    space = ResNetVariantSpace()  # 432 basic and 1024 bottleneck genotypes
    rng = random.Random(0)
    counts = Counter(space.sample(rng).block for _ in range(2000))
    assert counts["bottleneck"] / 2000 == pytest.approx(1024 / 1456, abs=0.04)


@pytest.mark.parametrize("space", [ResNetVariantSpace(), MobileNetVariantSpace(), ResNetVariantSpace("full")])
def test_suggest_with_a_random_sampler_gives_valid_genotypes(space):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    found = []

    def objective(trial: optuna.Trial) -> float:
        found.append(space.suggest(trial))
        return 0.0

    study.optimize(objective, n_trials=25)
    kind = ResNetVariantGenotype if space.name == "resnet-variants" else MobileNetVariantGenotype
    assert len(found) == 25 and all(isinstance(g, kind) and g.scale == space.scale for g in found)
    if space.size() < 20_000:
        assert set(found) <= set(space.enumerate())
    assert len(set(found)) > 20
    params = set().union(*(t.params for t in study.trials))
    if space.name == "resnet-variants":
        assert {"block", "stage0.blocks", "width_per_group", "groups"} <= params
    else:
        assert params == {f"stage{i}.repeats" for i in range(7)} | {"width_mult"}


def test_suggest_reads_back_a_fixed_trial():
    params = {"block": "basic", "stage0.blocks": 3, "stage1.blocks": 1, "stage2.blocks": 2}
    trial = optuna.trial.FixedTrial({**params, "width_per_group": 8, "groups": 4})
    assert ResNetVariantSpace().suggest(trial) == ResNetVariantGenotype("basic", (3, 1, 2), 8, 4)
    # bottlenecks go one deeper, so their depths are parameters of their own
    params = {"block": "bottleneck", **{f"stage{i}.bottleneck_blocks": 4 - i for i in range(3)}}
    trial = optuna.trial.FixedTrial({**params, "width_per_group": 8, "groups": 1})
    assert ResNetVariantSpace().suggest(trial) == ResNetVariantGenotype("bottleneck", (4, 3, 2), 8, 1)
    same = ResNetVariantSpace(blocks=[1, 2], bottleneck_blocks=[1, 2])  # shared depths: shared names
    trial = optuna.trial.FixedTrial({**{f"stage{i}.blocks": 2 for i in range(3)}, "block": "bottleneck",
                                     "width_per_group": 8, "groups": 1})  # fmt: skip
    assert same.suggest(trial).blocks == (2, 2, 2)
    full = {f"stage{i}.bottleneck_blocks": 6 for i in range(4)}
    trial = optuna.trial.FixedTrial({"block": "bottleneck", **full, "width_per_group": 64, "groups": 1})
    assert ResNetVariantSpace("full").suggest(trial).blocks == (6, 6, 6, 6)


@pytest.mark.parametrize("space", [ResNetVariantSpace(), MobileNetVariantSpace()])
def test_model_update_names_the_backbone_and_its_genotype(space):
    genotype = space.sample(random.Random(1))
    update = space.model_update(genotype)
    backbone = "resnet_variant" if space.name == "resnet-variants" else "mobilenet_variant"
    assert update == {"backbone": backbone, "backbone_kwargs": {"genotype": genotype.to_json()}}


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: ResNetVariantSpace(scale="tiny"), "scale"),
        (lambda: ResNetVariantSpace(blocks=[]), "blocks"),
        (lambda: ResNetVariantSpace(blocks=[0, 1]), "blocks"),
        (lambda: ResNetVariantSpace(groups=[3]), "groups"),
        (lambda: ResNetVariantSpace(block_types=["dense"]), "block"),
        (lambda: ResNetVariantSpace(widths=[1024], groups=[8]), "too wide"),
        (lambda: MobileNetVariantSpace(width_mults=[0.0]), "width_mult"),
        (lambda: MobileNetVariantSpace(repeats="123"), "repeats"),
    ],
)
def test_bad_choice_lists_are_one_line_config_errors(make, fragment):
    with pytest.raises(ConfigError, match=fragment) as err:
        make()
    assert "\n" not in str(err.value)
