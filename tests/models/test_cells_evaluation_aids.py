"""DARTS's evaluation network: drop-path on the non-identity edges, the auxiliary head, and the
parameter count of DARTS_V2 at C=36, 20 cells with that head."""

import pytest
import torch

from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.cells import AuxiliaryHead, CellNetwork, DiscreteCell, cell_shapes, drop_path
from selfnas.models.published_genotypes import PUBLISHED_GENOTYPES
from selfnas.training.classifier import Classifier

#: quark0/darts NetworkCIFAR(36, 10, 20, auxiliary=True, DARTS_V2): what its code counts (measured)
DARTS_V2_WITH_AUX = 3_825_768
DARTS_V2_WITHOUT_AUX = 3_349_342  # as tests/models/test_genotype_import.py

SKIPS = (("skip_connect", 0), ("skip_connect", 1)) * 4
ALL_SKIP = CellGenotype(normal=SKIPS, reduce=SKIPS)
#: node 0 of the normal cell: sep_conv(input 0) + skip(input 1): drop-path only on the first edge
SEP_PLUS_SKIP = CellGenotype(
    normal=(("sep_conv_3x3", 0), ("skip_connect", 1)) * 4,
    reduce=(("max_pool_3x3", 0), ("skip_connect", 1)) * 4,
)


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    pass


def test_drop_path_zeroes_samples_with_the_probability_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(20000, 2, 3, 3)
    y = drop_path(x, 0.3)
    dropped = (y == 0).all(dim=(1, 2, 3))
    assert abs(dropped.float().mean().item() - 0.3) < 0.015
    kept = y[~dropped]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.7))  # whole samples, scaled by 1 / (1 - p)
    assert ((y == 0) == dropped[:, None, None, None]).all()
    assert drop_path(x, 0.0) is x


def _normal_cell(genotype: CellGenotype, c: int = 2) -> DiscreteCell:
    shape = cell_shapes(c, 3, genotype.nodes)[0]  # the first cell: a normal one
    return DiscreteCell(genotype, shape)


def test_drop_path_in_a_cell_hits_the_non_identity_edges_with_the_probability_in_training_only():
    torch.manual_seed(0)
    cell = _normal_cell(SEP_PLUS_SKIP).train()
    s0, s1 = torch.randn(4000, 6, 4, 4), torch.randn(4000, 6, 4, 4)
    out = cell(s0, s1, drop_prob=0.4)
    skip_part = cell.pre1(
        s1
    )  # node 0 = drop(sep_conv(pre0(s0))) + pre1(s1); BN in training mode: batch stats
    sep_part = out[:, :2] - skip_part  # N x c x 4 x 4: zero exactly where the sep_conv edge was dropped
    dropped = (sep_part.abs() < 1e-6).flatten(1).all(dim=1)
    assert abs(dropped.float().mean().item() - 0.4) < 0.03
    cell.eval()  # evaluation: nothing is dropped, whatever the probability
    assert torch.equal(cell(s0, s1, drop_prob=0.4), cell(s0, s1, drop_prob=0.0))


def test_identity_edges_are_never_dropped():
    cell = _normal_cell(ALL_SKIP).train()
    s0, s1 = torch.randn(64, 6, 4, 4), torch.randn(64, 6, 4, 4)
    torch.manual_seed(1)
    assert torch.equal(cell(s0, s1, drop_prob=0.9), cell(s0, s1, drop_prob=0.0))


def test_the_network_applies_its_drop_path_probability_in_training_mode_only():
    torch.manual_seed(0)
    net = CellNetwork(PUBLISHED_GENOTYPES.get("DARTS_V2"), 3, C=2, layers=3)
    x = torch.randn(8, 3, 8, 8)
    assert net.drop_path_prob == 0.0  # inert unless a trainer raises it
    net.train()
    torch.manual_seed(1)
    plain = net(x)
    net.drop_path_prob = 0.5
    torch.manual_seed(1)
    assert not torch.allclose(net(x), plain)
    net.eval()
    with torch.no_grad():
        a = net(x)
        net.drop_path_prob = 0.0
        assert torch.equal(a, net(x))


def test_auxiliary_head_reads_the_cell_at_two_thirds_and_answers_in_training_only():
    torch.manual_seed(0)
    net = CellNetwork(PUBLISHED_GENOTYPES.get("DARTS_V2"), 3, C=4, layers=8)
    assert net.auxiliary_index == 5 and net.auxiliary_channels == 4 * 16  # 2 * 8 // 3; C doubled twice
    model = Classifier(net, 10, auxiliary=True).train()
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        features, hidden = net.forward_with_auxiliary(x)
        s0 = s1 = net.stem(x)
        for cell in net.cells[:6]:  # up to and including cell 5, the second reduction
            s0, s1 = s1, cell(s0, s1)
    assert torch.equal(hidden, s1) and hidden.shape == (2, 64, 8, 8)
    assert torch.equal(features, net(x)) and features.shape == (2, net.out_dim)
    for side in (32, 28, 16):  # DARTS's 8 x 8 map, and the 7 x 7 / 4 x 4 ones of smaller images
        logits, aux = model(torch.randn(2, 3, side, side))
        assert logits.shape == (2, 10) and aux is not None and aux.shape == (2, 10)
    model.eval()
    assert model(torch.randn(2, 3, 32, 32))[1] is None


def test_darts_v2_at_c36_20_cells_with_the_auxiliary_head_has_darts_parameter_count():
    net = CellNetwork(PUBLISHED_GENOTYPES.get("DARTS_V2"), 3, C=36, layers=20)
    model = Classifier(net, 10, auxiliary=True)
    assert sum(p.numel() for p in model.parameters()) == DARTS_V2_WITH_AUX
    counts = model.parameter_counts()
    assert counts == {
        "parameters": DARTS_V2_WITHOUT_AUX,
        "auxiliary_parameters": DARTS_V2_WITH_AUX - DARTS_V2_WITHOUT_AUX,
    }
    head = AuxiliaryHead(net.auxiliary_channels, 10)
    assert net.auxiliary_channels == 576 and sum(p.numel() for p in head.parameters()) == 476_426
