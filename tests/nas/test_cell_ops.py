import pytest
import torch
from torch import nn

from selfnas.errors import GenotypeError
from selfnas.models.cell_ops import (
    CELL_OPS,
    DARTS_CELL_OPS,
    PARAMETER_FREE_CELL_OPS,
    FactorizedReduce,
    make_cell_op,
    make_search_cell_op,
)
from selfnas.nas.mixed_op import MixedOp

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_table_holds_the_eight_darts_ops():
    assert sorted(DARTS_CELL_OPS) == CELL_OPS.names()
    assert PARAMETER_FREE_CELL_OPS < set(DARTS_CELL_OPS)


@pytest.mark.parametrize("name", DARTS_CELL_OPS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c", [2, 3, 8])
def test_output_shapes_at_stride_1_and_2(name, stride, c):
    for size in (8, 7):
        x = torch.randn(2, c, size, size)
        expected = (2, c, -(-size // stride), -(-size // stride))
        assert make_cell_op(name, c, stride)(x).shape == expected
        assert make_search_cell_op(name, c, stride)(x).shape == expected


@pytest.mark.parametrize("stride", [1, 2])
def test_none_gives_zeros(stride):
    y = make_cell_op("none", 4, stride)(torch.randn(2, 4, 6, 6))
    assert y.shape == (2, 4, 6 // stride, 6 // stride)
    assert not y.any()


def test_parameter_free_ops_hold_no_weights_at_stride_1():
    for name in PARAMETER_FREE_CELL_OPS:
        assert not list(make_cell_op(name, 4, 1).parameters()), name
    assert list(make_cell_op("skip_connect", 4, 2).parameters())  # a factorized reduction


def test_search_ops_have_no_affine_batchnorm_and_pooling_is_normalised():
    for name in DARTS_CELL_OPS:
        bns = [m for m in make_search_cell_op(name, 4, 2).modules() if isinstance(m, nn.BatchNorm2d)]
        assert all(not bn.affine for bn in bns), name
        assert bns or name == "none", name
    discrete = [m for m in make_cell_op("sep_conv_3x3", 4, 1).modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(discrete) == 2 and all(bn.affine for bn in discrete)
    assert isinstance(make_cell_op("max_pool_3x3", 4, 1), nn.MaxPool2d)


def test_factorized_reduce_sees_both_pixel_phases():
    op = FactorizedReduce(1, 2).eval()
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0  # only the shifted half sees odd pixels
    y = op(x)
    assert y[0, 0].abs().sum() == y[0, 0, 0, 0].abs() * 4  # first half: a constant (BN of zero input)
    assert y[0, 1, 0, 0] != y[0, 1, 1, 1]


@pytest.mark.parametrize("stride", [1, 2])
def test_one_hot_weights_equal_the_single_op(stride):
    torch.manual_seed(0)
    mixed = MixedOp({op: make_search_cell_op(op, 4, stride) for op in DARTS_CELL_OPS}).eval()
    x = torch.randn(2, 4, 8, 8)
    for i, op in enumerate(mixed.ops):
        weights = torch.zeros(len(mixed.ops))
        weights[i] = 1.0
        assert torch.equal(mixed(x, weights), op(x)), mixed.names[i]


def test_unknown_op_is_one_line_error():
    with pytest.raises(GenotypeError, match="unknown cell op") as err:
        make_cell_op("conv_7x7\nrm -rf", 4, 1)
    assert "\n" not in str(err.value)
