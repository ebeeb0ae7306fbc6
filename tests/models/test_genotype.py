import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfnas.errors import GenotypeError
from selfnas.models.genotype import HeadGenotype, genotype_from_json, load_genotype, save_genotype
from selfnas.models.head_ops import HEAD_OPS
from selfnas.models.heads import HeadLayer, HeadSpec


def example() -> HeadGenotype:
    projector = HeadSpec(
        (HeadLayer("linear_bn_relu", 64), HeadLayer("identity", 64), HeadLayer("linear_bn_noaffine", 32))
    )
    predictor = HeadSpec((HeadLayer("avg_pool_3", 32), HeadLayer("linear", 32)))
    return HeadGenotype(projector, predictor, "simsiam")


def test_round_trip_through_a_file(tmp_path):
    g = example()
    save_genotype(tmp_path / "g.json", g)
    assert load_genotype(tmp_path / "g.json") == g
    assert json.loads((tmp_path / "g.json").read_text())["format"] == "selfnas-genotype"


layers = st.lists(
    st.builds(HeadLayer, st.sampled_from(HEAD_OPS.names()), st.integers(1, 4096)), min_size=1, max_size=8
)


@settings(max_examples=60, deadline=None)
@given(layers, st.none() | layers, st.sampled_from([None, "simsiam", "simclr", "moco", "byol"]))
def test_any_valid_genotype_round_trips(proj, pred, method):
    g = HeadGenotype(HeadSpec(tuple(proj)), None if pred is None else HeadSpec(tuple(pred)), method)
    assert genotype_from_json(json.loads(json.dumps(g.to_json()))) == g


def _mutations():
    base = example().to_json()
    cases = []
    for key, value in [
        ("format", "pickle"),
        ("version", 2),
        ("version", True),
        ("space", "cells"),
        ("method", "dino"),
        ("projector", "__import__('os').system('rm -rf /')"),
        ("predictor", [1, 2]),
    ]:
        cases.append({**base, key: value})
    cases.append({**base, "extra": 1})
    cases.append({k: v for k, v in base.items() if k != "predictor"})
    bad_op = json.loads(json.dumps(base))
    bad_op["projector"]["layers"][0]["op"] = "eval('1')"
    cases.append(bad_op)
    big = json.loads(json.dumps(base))
    big["projector"]["layers"][0]["dim"] = 10**12
    cases.append(big)
    float_dim = json.loads(json.dumps(base))
    float_dim["projector"]["layers"][0]["dim"] = 64.0
    cases.append(float_dim)
    cases += [None, [], "heads", 42]
    return cases


@pytest.mark.parametrize("bad", _mutations())
def test_malformed_or_hostile_genotypes_are_refused(bad):
    with pytest.raises(GenotypeError) as err:
        genotype_from_json(bad)
    assert "\n" not in str(err.value)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=6),
    )
)
def test_random_json_never_crashes_the_parser(data):
    try:
        genotype_from_json(data)
    except GenotypeError:
        pass


def test_bad_files(tmp_path):
    with pytest.raises(GenotypeError, match="not found"):
        load_genotype(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        load_genotype(tmp_path / "bad.json")
    (tmp_path / "huge.json").write_text(" " * 2_000_000)
    with pytest.raises(GenotypeError, match="larger than"):
        load_genotype(tmp_path / "huge.json")
