import pytest
import torch

from selfnas.config import HEAD_SEARCH_OPS
from selfnas.errors import GenotypeError
from selfnas.models.heads import build_head
from selfnas.nas.spaces.heads import HeadSearchSpace, SearchHead


def space(layers=3, width=8):
    return HeadSearchSpace(layers, width, 6, "linear_bn_noaffine")


def test_space_size_matches_enumeration():
    s = HeadSearchSpace(2, 8, 6, "linear", ("identity", "avg_pool_3", "linear_bn_relu"))
    assert s.size == 9 == len(list(s.enumerate()))


def test_every_enumerated_choice_builds():
    s = HeadSearchSpace(2, 8, 6, "linear", ("identity", "max_pool_3", "linear_bn_elu"))
    for choice in s.enumerate():
        head = build_head(s.spec(choice, 8), 8)
        assert head(torch.randn(3, 8)).shape == (3, 6)


def test_supernet_shapes_and_stem():
    head = SearchHead(space(width=8), in_dim=8)
    assert head(torch.randn(4, 8)).shape == (4, 6)
    assert head.alpha.shape == (3, len(HEAD_SEARCH_OPS)) and torch.equal(
        head.alpha, torch.zeros_like(head.alpha)
    )
    wider = SearchHead(space(width=16), in_dim=8)  # a stem maps 8 -> 16
    assert wider(torch.randn(4, 8)).shape == (4, 6)
    assert wider.derive().layers[0].op == "linear_bn_relu" and len(wider.derive().layers) == 5


def test_derive_takes_the_argmax_and_is_deterministic():
    head = SearchHead(space(), in_dim=8)
    with torch.no_grad():
        head.alpha[0, HEAD_SEARCH_OPS.index("linear_bn_silu")] = 2.0
        head.alpha[1, HEAD_SEARCH_OPS.index("avg_pool_3")] = 1.0
        head.alpha[2, HEAD_SEARCH_OPS.index("identity")] = 0.5
    ops = [layer.op for layer in head.derive().layers]
    assert ops == ["linear_bn_silu", "avg_pool_3", "identity", "linear_bn_noaffine"]
    assert head.derive() == head.derive()
    assert head.parameter_free_count() == 2
    capped = [layer.op for layer in head.derive(max_parameter_free=1).layers]
    assert capped[0] == "linear_bn_silu" and capped[1] == "avg_pool_3"  # the stronger free pick stays
    assert capped[2] not in ("identity", "max_pool_3", "avg_pool_3")


def test_entropy_is_maximal_at_start():
    head = SearchHead(space(), in_dim=8)
    assert head.entropy() == pytest.approx(torch.log(torch.tensor(len(HEAD_SEARCH_OPS))).item(), rel=1e-6)


def test_bad_space_is_refused():
    with pytest.raises(GenotypeError):
        HeadSearchSpace(2, 8, 6, "linear", ("identity", "conv_9x9"))
    with pytest.raises(GenotypeError):
        space().spec(("identity",), 8)
    with pytest.raises(GenotypeError, match="ends in a fixed final op"):
        HeadSearchSpace(2, 8, 6, None)  # only the nasiam layout lets the last searched layer end a head
    with pytest.raises(GenotypeError, match="unknown head layout"):
        HeadSearchSpace(2, 8, 6, "linear", layout="darts")
