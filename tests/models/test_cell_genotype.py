import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfnas.errors import GenotypeError
from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.genotype import HeadGenotype, genotype_from_json, load_genotype, save_genotype
from selfnas.models.heads import HeadLayer, HeadSpec
from selfnas.nas.spaces.cells import CellSearchSpace

DARTS_V2 = CellGenotype(  # the cells of the DARTS paper (second order), a published genotype
    normal=(
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
    ),
    reduce=(
        ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1),
    ),
)  # fmt: skip


def test_round_trip_through_a_file_and_dispatch(tmp_path):
    save_genotype(tmp_path / "cells.json", DARTS_V2)
    loaded = load_genotype(tmp_path / "cells.json")
    assert isinstance(loaded, CellGenotype) and loaded == DARTS_V2
    data = json.loads((tmp_path / "cells.json").read_text())
    assert (data["format"], data["space"], data["nodes"]) == ("selfnas-genotype", "cells", 4)
    heads = HeadGenotype(HeadSpec((HeadLayer("linear", 8),)))
    save_genotype(tmp_path / "heads.json", heads)
    assert load_genotype(tmp_path / "heads.json") == heads


def test_repr_is_a_pasteable_literal_and_lists_become_tuples():
    assert eval(repr(DARTS_V2), {"CellGenotype": CellGenotype}) == DARTS_V2
    as_lists = CellGenotype([list(p) for p in DARTS_V2.normal], list(DARTS_V2.reduce), 4)
    assert as_lists == DARTS_V2 and hash(as_lists) == hash(DARTS_V2)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(0, 2**32))
def test_any_sampled_genotype_round_trips(nodes, seed):
    g = CellSearchSpace(nodes=nodes).sample(random.Random(seed))
    assert genotype_from_json(json.loads(json.dumps(g.to_json()))) == g


def _mutations() -> list[object]:
    base = DARTS_V2.to_json()
    cases: list[object] = [
        {**base, key: value}
        for key, value in [
            ("format", "pickle"),
            ("version", 2),
            ("version", True),
            ("nodes", True),
            ("nodes", 0),
            ("nodes", 10**9),
            ("nodes", "4"),
            ("nodes", 5),  # 8 pairs do not make 5 nodes
            ("normal", "__import__('os').system('rm -rf /')"),
            ("normal", base["normal"][:-1]),
            ("reduce", base["reduce"] * 10**4),
            ("reduce", None),
        ]
    ]
    cases += [{**base, "extra": 1}, {k: v for k, v in base.items() if k != "reduce"}]
    cases += [{**base, "space": "heads"}, {**base, "normal": [{"op": "skip_connect", "input": 0}] * 8}]
    for entry in [
        ["none", 0],  # the missing edge is not a choice
        ["eval('1')", 0],
        ["sep_conv_3x3\nx", 0],
        [5, 0],
        ["sep_conv_3x3", True],
        ["sep_conv_3x3", 1.0],
        ["sep_conv_3x3", -1],
        ["sep_conv_3x3", 4],  # node 2 reading node 2 (itself)
        ["sep_conv_3x3", 5],  # a forward reference
        ["sep_conv_3x3", 0, 1],
        ["sep_conv_3x3"],
    ]:
        bad = json.loads(json.dumps(base))
        bad["normal"][5] = entry
        cases.append(bad)
    twice = json.loads(json.dumps(base))
    twice["reduce"][1] = ["avg_pool_3x3", 0]  # node 0 reads input 0 twice
    cases.append(twice)
    return cases + [None, [], "cells", 42]


@pytest.mark.parametrize("bad", _mutations())
def test_malformed_or_hostile_genotypes_are_refused(bad):
    with pytest.raises(GenotypeError) as err:
        genotype_from_json(bad)
    assert "\n" not in str(err.value)


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(GenotypeError, match="nodes"):
        CellGenotype(DARTS_V2.normal, DARTS_V2.reduce, nodes=9)
    with pytest.raises(GenotypeError, match="reads input 2"):
        CellGenotype(
            (("skip_connect", 0), ("skip_connect", 2)), (("skip_connect", 0), ("skip_connect", 1)), 1
        )


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {"format": st.just("selfnas-genotype"), "version": st.just(1), "space": st.just("cells")},
        optional={
            "nodes": st.integers(-2, 10) | st.booleans() | st.text(max_size=3),
            "normal": st.lists(st.lists(st.text(max_size=12) | st.integers(-3, 12) | st.none(), max_size=3)),
            "reduce": st.lists(st.tuples(st.sampled_from(["skip_connect", "none"]), st.integers(-1, 10))),
        },
    )
)
def test_random_cell_json_never_crashes_the_parser(data):
    try:
        genotype_from_json(data)
    except GenotypeError as err:
        assert "\n" not in str(err)


def test_cell_genotype_file_builds_a_darts_cells_backbone(tmp_path):
    import random

    import torch

    from selfnas.build import build_model
    from selfnas.errors import GenotypeError as Err
    from selfnas.models.genotype import save_genotype
    from selfnas.nas.spaces.cells import CellSearchSpace

    genotype = CellSearchSpace(nodes=2, C=4, layers=3).sample(random.Random(0))
    save_genotype(tmp_path / "cells.json", genotype)
    net = build_model(tmp_path / "cells.json", in_channels=1)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, net.out_dim)
    with pytest.raises(Err):
        build_model(tmp_path / "cells.json", part="encoder")
