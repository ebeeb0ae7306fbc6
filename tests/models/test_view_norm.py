"""Per-view BatchNorm: one batched forward equals separate forwards of the views (outputs,
gradients, running statistics), for single norms, every backbone family and every head op;
eval mode and the model outside the context stay plain BatchNorm."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from selfnas.models.backbones import create_backbone
from selfnas.models.head_ops import HEAD_OPS
from selfnas.models.heads import HeadLayer, HeadSpec, build_head
from selfnas.models.view_norm import per_view_batchnorm

TOL = {"rtol": 1e-5, "atol": 1e-5}
#: whole networks run in float64: the batched and separate convolutions sum in different orders,
#: and float32 rounding of gradients near 1e4 alone exceeds 1e-5 (seen: mobilenet_v2, 1.5e-5 relative)
NETWORK_DTYPE = torch.float64


def two_views(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Two views whose statistics differ (shift and scale), so mixing them would show."""
    g = torch.Generator().manual_seed(0)
    return [
        torch.randn(shape, generator=g, dtype=dtype),
        3 * torch.randn(shape, generator=g, dtype=dtype) + 2,
    ]


def batched_vs_separate(net: nn.Module, views: list[torch.Tensor], per_view: bool = True) -> dict:
    """Run ``net`` (training mode) once on the concatenated views (per-view BatchNorm unless
    ``per_view`` is False) and a deep copy on each view separately, back-propagating the same
    random cotangent; returns both sides' outputs, input and parameter gradients and buffers."""
    separate = copy.deepcopy(net).train()
    net.train()
    x = torch.cat(views).requires_grad_(True)
    if per_view:
        with per_view_batchnorm(net, len(views)):
            y = net(x)
    else:
        y = net(x)
    xs = [v.clone().requires_grad_(True) for v in views]
    ys = torch.cat([separate(v) for v in xs])
    cotangent = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    (y * cotangent).sum().backward()
    (ys * cotangent).sum().backward()

    def grads(m: nn.Module) -> list[torch.Tensor]:
        return [p.grad for p in m.parameters() if p.requires_grad]

    return {
        "out": (y, ys),
        "input_grad": (x.grad, torch.cat([v.grad for v in xs])),
        "param_grads": (grads(net), grads(separate)),
        "buffers": (list(net.buffers()), list(separate.buffers())),
    }


def assert_equal_to_separate(net: nn.Module, views: list[torch.Tensor]) -> None:
    sides = batched_vs_separate(net, views)
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    for name, (batched, separate) in sides.items():
        assert_close(batched, separate, **TOL, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize(
    ("norm", "shape"),
    [
        (lambda: nn.BatchNorm1d(5), (6, 5)),
        (lambda: nn.BatchNorm1d(5, affine=False), (6, 5)),
        (lambda: nn.BatchNorm1d(3), (6, 3, 4)),
        (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
        (lambda: nn.BatchNorm3d(2), (4, 2, 3, 3, 3)),
    ],
    ids=["1d", "1d-noaffine", "1d-NCL", "2d", "3d"],
)
def test_one_norm_equals_separate_forwards(norm, shape, momentum):
    norm = norm()
    norm.momentum = momentum
    net = nn.Sequential(nn.Identity(), norm)
    with torch.no_grad():  # a state that the update rule shows: running stats away from (0, 1)
        norm.running_mean.fill_(0.5)
        norm.running_var.fill_(2.0)
        norm.num_batches_tracked.fill_(3)
    assert_equal_to_separate(net, two_views(shape))
    assert int(norm.num_batches_tracked) == 5  # one update per view, as two forwards


def test_three_views_and_the_running_stats_rule_written_out():
    norm = nn.BatchNorm1d(4, momentum=0.3)
    views = [torch.randn(5, 4) + i for i in range(3)]
    with per_view_batchnorm(norm, 3):
        norm(torch.cat(views))
    mean, var = torch.zeros(4), torch.ones(4)
    for v in views:  # per view, in order: running = (1 - m) running + m stat, unbiased variance
        mean = 0.7 * mean + 0.3 * v.mean(0)
        var = 0.7 * var + 0.3 * v.var(0, unbiased=True)
    assert_close(norm.running_mean, mean)
    assert_close(norm.running_var, var)


def test_without_the_context_the_views_mix():
    """The joint batch is what per-view BatchNorm fixes: it differs from separate forwards."""
    sides = batched_vs_separate(nn.BatchNorm1d(5), two_views((6, 5)), per_view=False)
    batched, separate = sides["out"]
    assert (batched - separate).abs().max() > 0.1


def test_eval_mode_and_outside_the_context_are_plain_batchnorm():
    norm = nn.BatchNorm2d(3)
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    plain = copy.deepcopy(norm).eval()
    x = torch.cat(two_views((4, 3, 5, 5)))
    norm.eval()
    with per_view_batchnorm(norm, 2):
        y = norm(x)
    assert torch.equal(y, plain(x))  # running statistics, no split
    assert torch.equal(norm.running_mean, plain.running_mean)
    assert type(norm) is nn.BatchNorm2d and "views" not in vars(norm)
    assert norm.state_dict().keys() == plain.state_dict().keys()


def test_the_class_comes_back_after_an_error_and_an_uneven_batch_is_refused():
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="does not split into 2 views"):
        with per_view_batchnorm(net, 2):
            net(torch.randn(5, 3))
    assert type(net[1]) is nn.BatchNorm1d and "views" not in vars(net[1])
    with pytest.raises(ValueError, match="at least one view"):
        with per_view_batchnorm(net, 0):
            pass


def test_batchnorm_subclasses_are_left_alone():
    class OwnNorm(nn.BatchNorm1d):
        pass

    net = nn.Sequential(OwnNorm(3), nn.BatchNorm1d(3))
    with per_view_batchnorm(net, 2):
        assert type(net[0]) is OwnNorm
        assert type(net[1]) is not nn.BatchNorm1d


# -- every backbone family and every head op -------------------------------------------


def _genotype_backbone(name: str) -> dict:
    from selfnas.nas.spaces.cells import CellSearchSpace
    from selfnas.nas.spaces.macro import MobileNetVariantSpace, ResNetVariantSpace

    rng = random.Random(0)
    if name == "darts_cells":
        return {
            "genotype": CellSearchSpace(nodes=2, C=4, layers=3).sample(rng).to_json(),
            "width": 4,
            "layers": 3,
        }
    space = (
        ResNetVariantSpace(widths=[8], groups=[1, 2]) if name == "resnet_variant" else MobileNetVariantSpace()
    )
    return {"genotype": space.sample(rng).to_json()}


BACKBONE_CASES = {  # name -> (kwargs, image side); small widths keep it CPU-cheap
    "resnet_small": (lambda: {"width": 8, "depths": [1, 1]}, 16),
    "resnet18": (dict, 16),
    "mobilenet_v2": (lambda: {"width_mult": 0.25}, 32),
    "darts_cells": (lambda: _genotype_backbone("darts_cells"), 16),
    "resnet_variant": (lambda: _genotype_backbone("resnet_variant"), 16),
    "mobilenet_variant": (lambda: _genotype_backbone("mobilenet_variant"), 16),
}


@pytest.mark.parametrize("name", sorted(BACKBONE_CASES))
def test_backbone_equals_separate_forwards(single_thread, name):
    kwargs, side = BACKBONE_CASES[name]
    torch.manual_seed(0)
    net = create_backbone(name, in_channels=1, **kwargs()).to(NETWORK_DTYPE)
    assert_equal_to_separate(net, two_views((3, 1, side, side), NETWORK_DTYPE))


def test_channels_last_input_keeps_its_layout_and_values(single_thread):
    norm = nn.BatchNorm2d(3)
    x = torch.cat(two_views((2, 3, 4, 4))).contiguous(memory_format=torch.channels_last)
    with per_view_batchnorm(norm, 2):
        assert norm(x).is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    net = create_backbone("resnet_small", in_channels=1, width=8, depths=[1, 1]).to(NETWORK_DTYPE)
    views = [
        v.contiguous(memory_format=torch.channels_last) for v in two_views((3, 1, 16, 16), NETWORK_DTYPE)
    ]
    assert_equal_to_separate(net.to(memory_format=torch.channels_last), views)


@pytest.mark.parametrize("op", HEAD_OPS.names())
def test_every_head_op_equals_separate_forwards(op):
    torch.manual_seed(0)
    spec = HeadSpec((HeadLayer("linear_bn_relu", 8), HeadLayer(op, 8), HeadLayer("linear_bn_noaffine", 6)))
    assert_equal_to_separate(build_head(spec, 5).to(NETWORK_DTYPE), two_views((4, 5), NETWORK_DTYPE))
