import itertools
import math
import random

import pytest
import torch
from torch import nn

from selfnas.errors import GenotypeError
from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.cells import CellNetwork, cell_shapes
from selfnas.nas.spaces.cells import CellSearchSpace, CellSupernet

pytestmark = pytest.mark.usefixtures("single_thread")


def test_edges_and_darts_size():
    assert CellSearchSpace().edges == 14
    assert CellSearchSpace(nodes=5).edges == 20
    assert CellSearchSpace().size == (1 * 3 * 6 * 10 * 7**8) ** 2  # ~1e18, as in DARTS


def test_size_equals_an_exhaustive_enumeration():
    space = CellSearchSpace(nodes=2, ops=("none", "skip_connect", "sep_conv_3x3"))
    cells = set()
    domains = [[(op, src) for op in space.ops for src in range(2 + k // 2)] for k in range(4)]
    for pairs in itertools.product(*domains):  # every pair list, valid or not
        try:
            CellGenotype(pairs, pairs, 2)
        except GenotypeError:
            continue
        cells.add((frozenset(pairs[:2]), frozenset(pairs[2:])))
    assert len(cells) ** 2 == space.size == 48**2
    listed = [space.enumerate_node_choices(node) for node in range(2)]
    assert [len(c) for c in listed] == [4, 12]
    assert all(len(set(choices)) == len(choices) for choices in listed)


def test_sample_is_valid_seeded_and_drawn_from_the_node_choices():
    space = CellSearchSpace(nodes=5)
    g = space.sample(random.Random(3))
    assert g == space.sample(random.Random(3)) and g.nodes == 5
    for node, pairs in enumerate(g.node_inputs(reduction=False)):
        assert pairs in space.enumerate_node_choices(node)
    assert len({space.sample(random.Random(seed)) for seed in range(20)}) == 20


@pytest.mark.parametrize(
    "kwargs", [{"nodes": 0}, {"nodes": 9}, {"ops": ("none",)}, {"ops": ("conv_9x9",)}, {"C": 0}]
)
def test_bad_spaces_are_refused(kwargs):
    with pytest.raises(GenotypeError):
        CellSearchSpace(**kwargs)


def test_reductions_sit_at_a_third_and_two_thirds():
    assert [s.reduction for s in cell_shapes(16, 8, 4)].count(True) == 2
    assert [i for i, s in enumerate(cell_shapes(16, 8, 4)) if s.reduction] == [2, 5]
    assert [s.c for s in cell_shapes(4, 3, 4)] == [4, 8, 16]


@pytest.mark.parametrize("nodes", [2, 3, 4])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_supernet_forward_and_alpha_grads(nodes, in_channels):
    torch.manual_seed(0)
    net = CellSupernet(CellSearchSpace(nodes=nodes, C=4, layers=3), in_channels)
    y = net(torch.randn(2, in_channels, 16, 16))
    assert y.shape == (2, nodes * 16) and net.out_dim == nodes * 16
    y.pow(2).sum().backward()
    arch = {n: p for n, p in net.named_parameters() if n.endswith("alpha")}
    assert set(arch) == {"normal_alpha", "reduce_alpha"}
    for p in arch.values():
        assert p.shape == (net.space.edges, 8)
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    assert not any(m.affine for m in net.cells.modules() if isinstance(m, nn.BatchNorm2d))


def test_derive_keeps_the_two_strongest_edges_by_best_non_none_op():
    space = CellSearchSpace(nodes=2, C=4, layers=3)
    net = CellSupernet(space, 3)
    none, skip, sep3, dil5 = (
        space.ops.index(o) for o in ("none", "skip_connect", "sep_conv_3x3", "dil_conv_5x5")
    )
    with torch.no_grad():
        net.normal_alpha.zero_()
        net.normal_alpha[2:5, none] = 9.0  # node 1: strong 'none' everywhere, ignored
        net.normal_alpha[2, sep3] = 1.0  # node 1 from input 0: weak
        net.normal_alpha[3, skip] = 3.0  # from input 1: strong
        net.normal_alpha[4, dil5] = 2.0  # from node 0: middle
        net.normal_alpha[0, sep3] = net.normal_alpha[1, skip] = 1.0  # node 0 keeps both inputs
        net.reduce_alpha.zero_()  # all equal: earlier inputs and ops win ties
    g = net.derive()
    assert g == net.derive()
    assert g.normal == (("sep_conv_3x3", 0), ("skip_connect", 1), ("skip_connect", 1), ("dil_conv_5x5", 2))
    assert g.reduce == (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("max_pool_3x3", 1))
    assert net.parameter_free_count() == 2


def test_entropy_starts_near_uniform():
    net = CellSupernet(CellSearchSpace(nodes=2, C=4, layers=3))
    assert net.entropy() == pytest.approx(math.log(8), abs=1e-4)


def test_discrete_network_from_a_derived_genotype():
    torch.manual_seed(1)
    supernet = CellSupernet(CellSearchSpace(nodes=3, C=4, layers=3), 1)
    net = CellNetwork.from_genotype(supernet.derive().to_json(), in_channels=1, C=4, layers=3)
    assert net.out_dim == 3 * 16 and net.genotype == supernet.derive()
    y = net(torch.randn(2, 1, 15, 15))  # odd size: reductions round up
    assert y.shape == (2, net.out_dim)
    assert all(m.affine for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert not any(n.endswith("alpha") for n, _ in net.named_parameters())
    assert CellNetwork.from_genotype(net.genotype, 1, 4, 3).out_dim == 48
