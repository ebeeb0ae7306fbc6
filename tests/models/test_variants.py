"""Networks of the ResNet / MobileNetV2 variant spaces: shapes, torchvision parity, backbone registry."""

from __future__ import annotations

import random

import pytest
import torch

from selfnas.errors import ConfigError, GenotypeError
from selfnas.models.backbones import BACKBONES, create_backbone
from selfnas.models.genotype import save_genotype
from selfnas.models.macro_genotype import MobileNetVariantGenotype, ResNetVariantGenotype
from selfnas.models.variants import MobileNetVariant, ResNetVariant, build_variant
from selfnas.nas.spaces.macro import MobileNetVariantSpace, ResNetVariantSpace


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _sampled(n: int = 6) -> list[ResNetVariantGenotype | MobileNetVariantGenotype]:
    # small widths keep this CPU-cheap; the whole default grid is covered by the sampling test below
    spaces = [ResNetVariantSpace(widths=[8, 16], groups=[1, 2, 8]), MobileNetVariantSpace()]
    rng = random.Random(0)
    return [space.sample(rng) for space in spaces for _ in range(n)]


@pytest.mark.parametrize("genotype", _sampled(), ids=lambda g: g.describe())
def test_sampled_genotypes_map_1_and_3_channel_28px_images_to_out_dim(single_thread, genotype):
    for channels in (1, 3):
        net = build_variant(genotype, in_channels=channels).eval()
        with torch.no_grad():
            y = net(torch.randn(2, channels, 28, 28))
        assert y.shape == (2, net.out_dim) and torch.isfinite(y).all()


def test_out_dim_follows_the_documented_rule():
    assert ResNetVariant(ResNetVariantGenotype("basic", (1, 1, 1), 8, 1)).out_dim == 64
    assert ResNetVariant(ResNetVariantGenotype("bottleneck", (1, 1, 1), 8, 1)).out_dim == 256
    assert MobileNetVariant(MobileNetVariantGenotype((1,) * 7, 1.0)).out_dim == 320
    assert MobileNetVariant(MobileNetVariantGenotype((1,) * 7, 2.5)).out_dim == 800


def test_every_default_space_choice_builds(single_thread):
    """Each value of every default choice list, at small scale, in a 1-block network (no forward)."""
    resnet = ResNetVariantSpace()
    for block in resnet.block_types:
        for depth in resnet.depths[block]:
            for width in resnet.widths:
                for groups in resnet.groups:
                    net = ResNetVariant(ResNetVariantGenotype(block, (depth, 1, 1), width, groups), 3)
                    assert net.out_dim in (64, 256)
    for mult in MobileNetVariantSpace().width_mults:
        assert MobileNetVariant(MobileNetVariantGenotype((3,) + (1,) * 6, mult), 1).out_dim >= 320


@pytest.mark.parametrize(
    "genotype",
    [ResNetVariantGenotype("bottleneck", (2, 2, 2), 16, 2), MobileNetVariantGenotype((2,) * 7, 1.5)],
    ids=lambda g: g.describe(),
)
def test_small_scale_forward_and_backward_of_a_batch_of_32(single_thread, genotype):
    torch.manual_seed(0)
    net = build_variant(genotype, in_channels=1).train()
    y = net(torch.randn(32, 1, 28, 28))
    y.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert y.shape == (32, net.out_dim) and all(g is not None and torch.isfinite(g).all() for g in grads)


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
def test_full_scale_reproduces_the_torchvision_networks(genotype, reference):
    """Same parameter count and feature width as torchvision's network without its classifier."""
    from torchvision import models

    ours = build_variant(genotype)
    theirs = getattr(models, reference)(weights=None)
    head = theirs.fc if hasattr(theirs, "fc") else theirs.classifier[-1]
    assert ours.out_dim == head.in_features
    assert _n_params(ours) == _n_params(theirs) - _n_params(head)


def test_full_scale_forward_at_64px(single_thread):
    net = build_variant(ResNetVariantGenotype("basic", (2, 2, 2, 2), 32, 1, "full"), in_channels=1).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 64, 64)).shape == (1, 512)


def test_registered_backbones_take_a_json_object_a_file_or_a_genotype(tmp_path, single_thread):
    assert "resnet_variant" in BACKBONES and "mobilenet_variant" in BACKBONES
    for name in ("resnet_variant", "mobilenet_variant"):
        assert BACKBONES.describe(name) and "\n" not in BACKBONES.describe(name)
    resnet = ResNetVariantGenotype("basic", (1, 2, 1), 8, 2)
    save_genotype(tmp_path / "r.json", resnet)
    for given in (resnet.to_json(), str(tmp_path / "r.json")):
        net = create_backbone("resnet_variant", in_channels=1, genotype=given)
        assert isinstance(net, ResNetVariant) and net.genotype == resnet
    mobile = MobileNetVariantGenotype((1,) * 7, 1.0)
    net = create_backbone("mobilenet_variant", in_channels=3, genotype=mobile.to_json())
    assert isinstance(net, MobileNetVariant) and net(torch.randn(2, 3, 28, 28)).shape == (2, 320)


def test_registered_backbones_refuse_a_missing_wrong_or_hostile_genotype(tmp_path):
    with pytest.raises(ConfigError, match="resnet-variants genotype"):
        create_backbone("resnet_variant", in_channels=1)
    resnet = ResNetVariantGenotype("basic", (1, 1, 1), 8, 1)
    with pytest.raises(GenotypeError, match="'resnet-variants' is not 'mobilenet-variants'"):
        create_backbone("mobilenet_variant", genotype=resnet.to_json())
    save_genotype(tmp_path / "r.json", resnet)
    with pytest.raises(ConfigError, match="mobilenet-variants genotype"):
        create_backbone("mobilenet_variant", genotype=str(tmp_path / "r.json"))
    with pytest.raises(GenotypeError, match="block"):
        bad = {**ResNetVariantGenotype("basic", (1, 1, 1), 8, 1).to_json(), "block": "__import__('os')"}
        create_backbone("resnet_variant", genotype=bad)
    with pytest.raises(GenotypeError, match="not found"):
        create_backbone("resnet_variant", genotype=str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="in_channels"):
        create_backbone(
            "resnet_variant", in_channels=0, genotype=ResNetVariantGenotype("basic", (1,) * 3, 8).to_json()
        )
    with pytest.raises(ConfigError, match="accepts"):
        create_backbone("mobilenet_variant", width=3)


def test_train_with_genotype_sets_the_macro_backbone(tmp_path):
    from selfnas.api import with_genotype
    from selfnas.config import build_config

    genotype = MobileNetVariantGenotype((1, 2, 1, 1, 1, 1, 1), 2.0)
    save_genotype(tmp_path / "g.json", genotype)
    config = with_genotype(build_config(), tmp_path / "g.json")
    assert config.model.backbone == "mobilenet_variant"
    assert config.model.backbone_kwargs == {"genotype": genotype.to_json()}
    resnet = ResNetVariantGenotype("bottleneck", (1, 1, 2), 16, 4)
    save_genotype(tmp_path / "r.json", resnet)
    model = with_genotype(build_config(), tmp_path / "r.json").model
    assert (model.backbone, model.backbone_kwargs) == ("resnet_variant", {"genotype": resnet.to_json()})
    net = create_backbone(model.backbone, in_channels=1, **model.backbone_kwargs)
    assert isinstance(net, ResNetVariant) and net.genotype == resnet
