import json

import pytest
import torch
from torch import nn

from selfnas.errors import GenotypeError
from selfnas.methods import METHOD_RECORDS
from selfnas.models.head_ops import HEAD_OPS, PARAMETER_FREE_HEAD_OPS, make_head_op
from selfnas.models.heads import HeadLayer, HeadSpec, build_head, default_heads


@pytest.mark.parametrize("op", HEAD_OPS.names())
def test_every_op_keeps_batch_and_gives_out_dim(op):
    module = make_head_op(op, 10, 10)
    assert module(torch.randn(4, 10)).shape == (4, 10)
    if op in PARAMETER_FREE_HEAD_OPS:  # no weight matrix; NASiam's pools keep a BatchNorm's scale and shift
        assert not any(isinstance(m, nn.Linear) for m in module.modules())
        assert sum(p.numel() for p in module.parameters()) <= 2 * 10


def test_pooling_over_feature_axis_by_hand():
    x = torch.tensor([[1.0, 5.0, 2.0, 0.0]])
    assert make_head_op("max_pool_3", 4, 4)(x).tolist() == [[5.0, 5.0, 5.0, 2.0]]
    avg = make_head_op("avg_pool_3", 4, 4)(x)
    assert torch.allclose(avg, torch.tensor([[3.0, 8 / 3, 7 / 3, 1.0]]))


def test_nasiams_pools_count_the_padding_and_normalise_after():
    """nn.AvgPool1d's default (NASiam): the edge features are divided by 3, then a BatchNorm."""
    x = torch.tensor([[1.0, 5.0, 2.0, 0.0]])
    avg = make_head_op("avg_pool_3_bn", 4, 4).eval()  # fresh running stats: BN is x / sqrt(1 + eps)
    scale = (1 + avg[-1].eps) ** -0.5
    assert torch.allclose(avg(x), torch.tensor([[2.0, 8 / 3, 7 / 3, 2 / 3]]) * scale)
    assert isinstance(avg[-1], nn.BatchNorm1d) and avg[-1].affine
    top = make_head_op("max_pool_3_bn", 4, 4).eval()
    assert torch.allclose(top(x), torch.tensor([[5.0, 5.0, 5.0, 2.0]]) * scale)
    assert make_head_op("avg_pool_3_bn", 8, 4)(torch.randn(3, 8)).shape == (3, 4)  # NASiam's wrapper


def test_width_preserving_op_refuses_width_change():
    with pytest.raises(GenotypeError, match="keeps the width"):
        make_head_op("identity", 8, 4)


def test_default_heads_build_and_round_trip_json():
    for method in METHOD_RECORDS.values():
        projector, predictor = default_heads(method, 32, 16, 8)
        head = build_head(projector, 24)
        assert head(torch.randn(5, 24)).shape == (5, 16)
        again = HeadSpec.from_json(json.loads(json.dumps(projector.to_json())))
        assert again == projector
        if predictor is not None:
            assert build_head(predictor, 16)(torch.randn(5, 16)).shape == (5, 16)


def test_repr_is_a_pasteable_literal():
    spec = HeadSpec((HeadLayer("linear_bn_relu", 8), HeadLayer("linear", 4)))
    assert eval(repr(spec), {"HeadSpec": HeadSpec, "HeadLayer": HeadLayer}) == spec  # noqa: S307 - test only


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"layers": []},
        {"layers": [{"op": "linear", "dim": 4}], "extra": 1},
        {"layers": [{"op": "__import__('os').system('x')", "dim": 4}]},
        {"layers": [{"op": "linear", "dim": "4"}]},
        {"layers": [{"op": "linear", "dim": True}]},
        {"layers": [{"op": "linear", "dim": 10**9}]},
        {"layers": [{"op": "linear", "dim": 4, "act": "relu"}]},
        {"layers": "linear"},
    ],
)
def test_bad_head_specs_are_refused(bad):
    with pytest.raises(GenotypeError):
        HeadSpec.from_json(bad)
