"""Full-scale variants compute what the torchvision networks compute, not only with as many parameters.

Each full-scale genotype that the variant module documents as a torchvision network (ResNet-18,
ResNet-50, ResNeXt-50 32x4d, MobileNetV2) gets torchvision's weights, copied through an explicit
name mapping that must cover both state dicts with equal shapes. torchvision's BatchNorm affine
parameters are randomised first, so a mis-mapped or missing BatchNorm shows, and their running
statistics are measured on random images, so that in eval mode the features depend on the input.
Both networks then embed the same fixed images in eval mode; torchvision's classifier is replaced
by the identity, so both return the pooled, flattened features. The architectures are compared
as they are: the full-scale stems are torchvision's (the small-image stems are not compared here).
"""

from __future__ import annotations

import re

import pytest
import torch

from selfnas.models.macro_genotype import MobileNetVariantGenotype, ResNetVariantGenotype
from selfnas.models.variants import build_variant


def _resnet_name(name: str) -> str | None:
    """torchvision ResNet key -> ours; None for the classifier."""
    if name.startswith("fc."):
        return None
    if m := re.fullmatch(r"conv1\.(.+)", name):
        return f"stem.0.0.{m[1]}"
    if m := re.fullmatch(r"bn1\.(.+)", name):
        return f"stem.0.1.{m[1]}"
    if m := re.fullmatch(r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)", name):
        stage, block, kind, k, rest = int(m[1]) - 1, m[2], m[3], int(m[4]), m[5]
        return f"stages.{stage}.{block}.body.{2 * (k - 1)}.{0 if kind == 'conv' else 1}.{rest}"
    if m := re.fullmatch(r"layer(\d)\.(\d+)\.downsample\.([01])\.(.+)", name):
        return f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.{m[3]}.{m[4]}"
    raise AssertionError(f"unmapped torchvision key {name}")


def _mobilenet_name(name: str) -> str | None:
    """torchvision MobileNetV2 key -> ours; None for the classifier. Our stem is a conv-BN and a
    separate ReLU6 (torchvision's is one module), so every later index moves by one."""
    if name.startswith("classifier."):
        return None
    m = re.fullmatch(r"features\.(\d+)\.(.+)", name)
    assert m, name
    index, rest = int(m[1]), m[2]
    return f"features.{0 if index == 0 else index + 1}.{rest}"


def _set_batchnorm(net: torch.nn.Module) -> None:
    """Random BatchNorm affine parameters, and running statistics measured on random images (so that
    in eval mode every layer is normalised and the features still depend on the input)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + 4 * torch.rand(n, generator=g))  # up to 4.5: ReLU6 clips
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: the statistics of the batch below
        net.train()(torch.randn(8, 3, 64, 64, generator=g))


@pytest.mark.parametrize(
    ("genotype", "reference"),
    [
        (ResNetVariantGenotype("basic", (2, 2, 2, 2), 64, 1, "full"), "resnet18"),
        (ResNetVariantGenotype("bottleneck", (3, 4, 6, 3), 64, 1, "full"), "resnet50"),
        (ResNetVariantGenotype("bottleneck", (3, 4, 6, 3), 4, 32, "full"), "resnext50_32x4d"),
        (MobileNetVariantGenotype((1, 2, 3, 4, 3, 3, 1), 1.0, "full"), "mobilenet_v2"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_full_scale_features_equal_torchvision_with_its_weights(single_thread, genotype, reference):
    from torchvision import models

    torch.manual_seed(0)
    theirs = getattr(models, reference)(weights=None)
    _set_batchnorm(theirs)
    ours = build_variant(genotype)
    if reference == "mobilenet_v2":
        rename = _mobilenet_name
        theirs.classifier = torch.nn.Identity()
    else:
        rename = _resnet_name
        theirs.fc = torch.nn.Identity()
    source = {rename(k): v for k, v in theirs.state_dict().items() if rename(k) is not None}
    target = ours.state_dict()
    assert source.keys() == target.keys()  # the mapping covers both networks, one to one
    assert all(source[k].shape == target[k].shape for k in target)
    ours.load_state_dict(source)

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # N x 3 x 64 x 64
    with torch.no_grad():
        expected = theirs.eval()(x)  # N x features
        got = ours.eval()(x)
    assert got.shape == expected.shape == (2, ours.out_dim)
    # features that carry the input: the two images' features differ well beyond the tolerance
    assert (expected[0] - expected[1]).abs().max() > 0.1 * expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
