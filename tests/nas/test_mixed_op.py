import pytest
import torch

from selfnas.config import HEAD_SEARCH_OPS
from selfnas.models.head_ops import make_head_op
from selfnas.nas.mixed_op import MixedOp


def test_one_hot_weights_equal_the_single_op():
    torch.manual_seed(0)
    mixed = MixedOp({op: make_head_op(op, 12, 12) for op in HEAD_SEARCH_OPS}).eval()
    x = torch.randn(5, 12)
    for i, op in enumerate(mixed.ops):
        weights = torch.zeros(len(mixed.ops))
        weights[i] = 1.0
        assert torch.equal(mixed(x, weights), op(x)), mixed.names[i]


def test_weights_mix_linearly():
    mixed = MixedOp(
        {"identity": make_head_op("identity", 4, 4), "max_pool_3": make_head_op("max_pool_3", 4, 4)}
    )
    x = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    out = mixed(x, torch.tensor([0.25, 0.75]))
    assert torch.allclose(out, 0.25 * x + 0.75 * torch.tensor([[3.0, 3.0, 3.0, 2.0]]))


def test_empty_mixed_op_is_refused():
    with pytest.raises(ValueError):
        MixedOp({})
