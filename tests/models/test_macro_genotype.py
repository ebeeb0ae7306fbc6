"""ResNet / MobileNetV2 variant genotypes: round trips, dispatch, and strict refusal of bad JSON."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfnas.errors import GenotypeError
from selfnas.models.genotype import GENOTYPE_SPACES, genotype_from_json, load_genotype, save_genotype
from selfnas.models.macro_genotype import MobileNetVariantGenotype, ResNetVariantGenotype
from selfnas.nas.spaces.macro import MobileNetVariantSpace, ResNetVariantSpace

RESNET = ResNetVariantGenotype("basic", (2, 1, 3), 16, 2)
RESNET50 = ResNetVariantGenotype("bottleneck", (3, 4, 6, 3), 64, 1, scale="full")
MOBILENET = MobileNetVariantGenotype((1, 2, 3, 2, 1, 3, 1), 1.5)


@pytest.mark.parametrize("genotype", [RESNET, RESNET50, MOBILENET])
def test_round_trip_through_json_and_a_file(tmp_path, genotype):
    data = genotype.to_json()
    assert (data["format"], data["version"], data["space"]) == ("selfnas-genotype", 1, genotype.space)
    assert data["scale"] == genotype.scale
    assert type(genotype).from_json(json.loads(json.dumps(data))) == genotype
    save_genotype(tmp_path / "g.json", genotype)
    loaded = load_genotype(tmp_path / "g.json")
    assert type(loaded) is type(genotype) and loaded == genotype and hash(loaded) == hash(genotype)


def test_registered_for_dispatch_and_described():
    assert GENOTYPE_SPACES["resnet-variants"] is ResNetVariantGenotype
    assert GENOTYPE_SPACES["mobilenet-variants"] is MobileNetVariantGenotype
    assert RESNET.describe() == "resnet basic [2,1,3] w16 g2"
    assert RESNET50.describe() == "resnet bottleneck [3,4,6,3] w64 g1 full"
    assert MOBILENET.describe() == "mobilenet [1,2,3,2,1,3,1] x1.5"


def test_lists_become_tuples_and_ints_floats():
    assert ResNetVariantGenotype("basic", [2, 1, 3], 16, 2) == RESNET  # type: ignore[arg-type]
    g = MobileNetVariantGenotype([1, 1, 1, 1, 1, 1, 1], 2)  # type: ignore[arg-type]
    assert g.repeats == (1,) * 7 and isinstance(g.width_mult, float) and g.to_json()["width_mult"] == 2.0


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["small", "full"]), st.integers(0, 2**32))
def test_any_sampled_genotype_round_trips(scale, seed):
    for space in (ResNetVariantSpace(scale), MobileNetVariantSpace(scale)):
        g = space.sample(random.Random(seed))
        assert genotype_from_json(json.loads(json.dumps(g.to_json()))) == g


def _hostile() -> list[object]:
    r, m = RESNET.to_json(), MOBILENET.to_json()
    cases: list[object] = [
        {**r, key: value}
        for key, value in [
            ("format", "pickle"),
            ("version", 2),
            ("version", True),
            ("scale", "huge"),
            ("scale", "full"),  # 3 stages are a small network
            ("scale", None),
            ("block", "__import__('os').system('rm -rf /')"),
            ("block", "basic\nbottleneck"),
            ("block", ["basic"]),
            ("blocks", [2, 1]),
            ("blocks", [2, 1, 3, 4]),
            ("blocks", [2, True, 3]),
            ("blocks", [2, 0, 3]),
            ("blocks", [2, 1.0, 3]),
            ("blocks", [2, 10**9, 3]),
            ("blocks", [1] * 10**5),
            ("blocks", "213"),
            ("blocks", {"0": 2}),
            ("width_per_group", True),
            ("width_per_group", 0),
            ("width_per_group", 16.0),
            ("width_per_group", "16"),
            ("width_per_group", 10**12),
            ("width_per_group", 2048),  # 2048 x 2 groups is too wide
            ("groups", 3),  # does not divide the stem width 16
            ("groups", -2),
            ("groups", False),
            ("groups", 32),
        ]
    ]
    cases += [
        {**m, key: value}
        for key, value in [
            ("repeats", [1, 2, 3]),
            ("repeats", [1, 2, 3, 2, 1, 3, None]),
            ("repeats", [1, 2, 3, 2, 1, 3, 100]),
            ("repeats", None),
            ("width_mult", float("nan")),
            ("width_mult", float("inf")),
            ("width_mult", 0.0),
            ("width_mult", 1e9),
            ("width_mult", True),
            ("width_mult", "1.5"),
            ("width_mult", "eval('1.5')"),
        ]
    ]
    cases += [
        {**r, "extra": 1},
        {k: v for k, v in r.items() if k != "groups"},
        {**m, "blocks": [1, 1, 1]},
        {**r, "space": "mobilenet-variants"},  # a ResNet body under the MobileNet header
        {**m, "space": ["mobilenet-variants"]},
        {**m, "space": "__import__('os')"},
    ]
    return cases + [None, [], "resnet-variants", 42]


@pytest.mark.parametrize("bad", _hostile())
def test_malformed_or_hostile_genotypes_are_refused(bad):
    with pytest.raises(GenotypeError) as err:
        genotype_from_json(bad)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message and len(message) < 300


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(GenotypeError, match="blocks"):
        ResNetVariantGenotype("basic", (1, 1, 1), 16, 1, scale="full")
    with pytest.raises(GenotypeError, match="groups"):
        ResNetVariantGenotype("basic", (1, 1, 1), 16, 5)
    with pytest.raises(GenotypeError, match="width_mult"):
        MobileNetVariantGenotype((1,) * 7, -1.0)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["resnet-variants", "mobilenet-variants"]),
    st.fixed_dictionaries(
        {},
        optional={
            "scale": st.sampled_from(["small", "full"]) | _JSON_VALUES,
            "block": st.sampled_from(["basic", "bottleneck"]) | _JSON_VALUES,
            "blocks": st.lists(st.integers(-1, 70) | st.booleans(), max_size=5) | _JSON_VALUES,
            "width_per_group": st.integers(-1, 5000) | _JSON_VALUES,
            "groups": st.integers(-1, 80) | _JSON_VALUES,
            "repeats": st.lists(st.integers(-1, 20) | st.floats(), min_size=6, max_size=8) | _JSON_VALUES,
            "width_mult": st.floats() | st.integers(-1, 5) | _JSON_VALUES,
            "junk": _JSON_VALUES,
        },
    ),
)
def test_random_json_never_raises_anything_but_genotype_error(space, body):
    data = {"format": "selfnas-genotype", "version": 1, "space": space, **body}
    try:
        genotype = genotype_from_json(data)
    except GenotypeError as err:
        assert "\n" not in str(err)
    else:  # what parses must round-trip
        assert genotype_from_json(json.loads(json.dumps(genotype.to_json()))) == genotype


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _JSON_VALUES, max_size=8))
def test_random_dicts_never_raise_anything_but_genotype_error(data):
    try:
        genotype_from_json(data)
    except GenotypeError as err:
        assert "\n" not in str(err)
