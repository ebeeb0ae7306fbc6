"""Backbone table: shapes, out_dim, errors, determinism and channels_last input."""

from __future__ import annotations

import pytest
import torch

from selfnas.errors import ConfigError, RegistryError
from selfnas.models.backbones import BACKBONES, backbone_names, create_backbone

# name -> (batch, image side, out_dim)
CASES = {
    "resnet_small": (4, 28, 64),
    "resnet18": (4, 32, 512),
    "resnet50": (2, 32, 2048),
    "tv_resnet18": (2, 64, 512),
    "tv_resnet50": (2, 64, 2048),
    "mobilenet_v2": (2, 64, 1280),
}


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_backbone_maps_images_to_out_dim_features(name: str, in_channels: int) -> None:
    batch, side, out_dim = CASES[name]
    model = create_backbone(name, in_channels=in_channels)
    assert model.out_dim == out_dim
    with torch.no_grad():
        y = model(torch.randn(batch, in_channels, side, side))
    assert y.shape == (batch, out_dim)
    assert torch.isfinite(y).all()


def test_registry_lists_every_backbone_with_help() -> None:
    genotype_backbones = ["darts_cells", "mobilenet_variant", "resnet_variant"]  # need a genotype
    assert backbone_names() == sorted([*CASES, *genotype_backbones])
    for name in backbone_names():
        help_line = BACKBONES.describe(name)
        assert help_line and "\n" not in help_line


def test_unknown_name_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="resnet_small"):
        create_backbone("resnet1000")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet_small", {"wdith": 16}),
        ("resnet_small", {"width": 0}),
        ("resnet_small", {"width": 8.5}),
        ("resnet_small", {"width": True}),
        ("resnet_small", {"depths": ()}),
        ("resnet_small", {"depths": (1, 0)}),
        ("resnet_small", {"depths": "111"}),
        ("resnet_small", {"in_channels": 0}),
        ("resnet_small", {"zero_init_residual": "yes"}),
        ("resnet18", {"width": 2}),
        ("tv_resnet50", {"in_channels": -1}),
        ("mobilenet_v2", {"width_mult": 0.0}),
        ("mobilenet_v2", {"width_mult": "wide"}),
    ],
)
def test_bad_kwargs_are_config_errors(name: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        create_backbone(name, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert name in message and "\n" not in message


def test_resnet_small_width_and_depths_change_out_dim_and_size() -> None:
    base = create_backbone("resnet_small")
    wider = create_backbone("resnet_small", width=32)
    deeper = create_backbone("resnet_small", depths=[2, 2, 2])
    four_stages = create_backbone("resnet_small", in_channels=1, width=8, depths=(1, 1, 1, 1))
    assert (base.out_dim, wider.out_dim, deeper.out_dim, four_stages.out_dim) == (64, 128, 64, 64)
    assert _n_params(wider) > _n_params(base)
    assert _n_params(deeper) > _n_params(base)
    with torch.no_grad():
        assert four_stages(torch.randn(2, 1, 28, 28)).shape == (2, 64)


def test_mobilenet_width_mult_is_accepted() -> None:
    model = create_backbone("mobilenet_v2", in_channels=1, width_mult=0.5)
    assert model.out_dim == 1280
    assert _n_params(model) < _n_params(create_backbone("mobilenet_v2", in_channels=1))


def test_zero_init_residual_zeroes_last_bn_gamma() -> None:
    model = create_backbone("resnet_small", zero_init_residual=True)
    block = model.stages[0][0]
    assert torch.count_nonzero(block.bn2.weight) == 0
    assert torch.count_nonzero(block.bn1.weight) > 0


def test_output_is_deterministic_under_manual_seed() -> None:
    outputs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = create_backbone("resnet_small", in_channels=1)
        x = torch.randn(4, 1, 28, 28)
        with torch.no_grad():
            outputs.append(model(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["resnet_small", "tv_resnet18"])
def test_channels_last_input_matches_contiguous(name: str) -> None:
    batch, side, out_dim = CASES[name]
    model = create_backbone(name).eval()
    x = torch.randn(batch, 3, side, side)
    with torch.no_grad():
        expected = model(x)
        got = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert got.shape == (batch, out_dim)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_backward_reaches_the_stem() -> None:
    model = create_backbone("resnet_small", in_channels=1)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    assert model.stem[0].weight.grad is not None
    assert torch.count_nonzero(model.stem[0].weight.grad) > 0


def test_darts_cells_backbone_from_a_genotype() -> None:
    import random

    from selfnas.nas.spaces.cells import CellSearchSpace

    genotype = CellSearchSpace(nodes=2, C=4, layers=3).sample(random.Random(0)).to_json()
    net = create_backbone("darts_cells", in_channels=1, genotype=genotype, width=4, layers=3)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, net.out_dim)
    with pytest.raises(ConfigError, match="cell genotype"):
        create_backbone("darts_cells", in_channels=1)
