"""The backbone table: name -> constructor ``(in_channels, **kwargs) -> nn.Module``.

Every backbone maps ``N x C x H x W`` float images to ``N x out_dim`` features
(global average pooled, flattened) and carries an int attribute ``out_dim``.
``resnet_small`` is the CPU default for 28-32 px images; ``resnet18``/``resnet50`` use
the CIFAR stem for 32 px; ``tv_*`` and ``mobilenet_v2`` keep the ImageNet stem for
96-224 px. Weights are always random (``weights=None``): nothing is downloaded.
"""

from __future__ import annotations

# torchvision is imported inside the factories: importing it pulls in torch._dynamo (~2 s),
# which the CPU default backbone and the CLI's error paths never need.
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from selfnas.errors import ConfigError
from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.cells import CellNetwork
from selfnas.models.genotype import load_genotype
from selfnas.models.macro_genotype import MobileNetVariantGenotype, ResNetVariantGenotype
from selfnas.models.pointwise import StridedPointwiseConv
from selfnas.models.variants import MobileNetVariant, ResNetVariant, variant_from_config
from selfnas.registry import Registry

BackboneFactory = Callable[..., nn.Module]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")


#: upper bounds on size options: far above any useful network, low enough that a typo
#: (width 10**9) is refused with one line instead of exhausting memory
MAX_WIDTH, MAX_DEPTH, MAX_STAGES, MAX_CHANNELS, MAX_WIDTH_MULT = 4096, 256, 8, 64, 16.0


def _positive_int(backbone: str, key: str, value: object, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"backbone {backbone!r}: {key} must be a positive int, got {value!r}")
    if upper is not None and value > upper:
        raise ConfigError(f"backbone {backbone!r}: {key} {value} is too large; the most allowed is {upper}")
    return value


def _positive_float(backbone: str, key: str, value: object, upper: float = float("inf")) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise ConfigError(f"backbone {backbone!r}: {key} must be a positive number, got {value!r}")
    if value > upper:
        raise ConfigError(f"backbone {backbone!r}: {key} {value} is too large; the most allowed is {upper:g}")
    return float(value)


def _flag(backbone: str, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"backbone {backbone!r}: {key} must be true or false, got {value!r}")
    return value


def _kaiming(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual; a 1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(StridedPointwiseConv(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x Cin x H x W
        y = self.relu(self.bn1(self.conv1(x)))  # N x Cout x H/s x W/s
        y = self.bn2(self.conv2(y))  # N x Cout x H/s x W/s
        return self.relu(y + self.shortcut(x))  # N x Cout x H/s x W/s


class SmallResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stride-1 stem, basic-block stages doubling the width, global pooling."""

    def __init__(
        self, in_channels: int, width: int, depths: Sequence[int], zero_init_residual: bool = False
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_ch = width
        for i, depth in enumerate(depths):
            out_ch = width * 2**i
            blocks = [
                BasicBlock(in_ch if j == 0 else out_ch, out_ch, 2 if i > 0 and j == 0 else 1)
                for j in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim: int = in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _kaiming(m)
            elif isinstance(m, BasicBlock) and zero_init_residual:
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x C x H x W
        x = self.stages(self.stem(x))  # N x D x H/2^(S-1) x W/2^(S-1)
        return torch.flatten(self.pool(x), 1)  # N x D


@BACKBONES.register(
    "resnet_small", help="CIFAR-style basic-block ResNet, the CPU default, 28-32 px (width, depths)"
)
def resnet_small(
    in_channels: int = 3,
    width: int = 16,
    depths: Sequence[int] = (1, 1, 1),
    zero_init_residual: bool = False,
) -> SmallResNet:
    """Stages of ``depths`` basic blocks at width, 2*width, ...; ``out_dim = width * 2**(len(depths)-1)``."""
    name = "resnet_small"
    if (
        isinstance(depths, str | bytes)
        or not isinstance(depths, Sequence)
        or not 0 < len(depths) <= MAX_STAGES
    ):
        shown = repr(depths)[:60]
        raise ConfigError(
            f"backbone {name!r}: depths must be a list of 1 to {MAX_STAGES} positive ints, got {shown}"
        )
    return SmallResNet(
        _positive_int(name, "in_channels", in_channels, MAX_CHANNELS),
        _positive_int(name, "width", width, MAX_WIDTH),
        tuple(_positive_int(name, "depths", d, MAX_DEPTH) for d in depths),
        _flag(name, "zero_init_residual", zero_init_residual),
    )


def _tv(name: str) -> Callable[..., nn.Module]:
    from torchvision import models

    return getattr(models, name)


def _tv_resnet(
    name: str,
    ctor: Callable[..., nn.Module],
    in_channels: int,
    cifar_stem: bool,
    zero_init_residual: bool,
) -> nn.Module:
    in_channels = _positive_int(name, "in_channels", in_channels, MAX_CHANNELS)
    net = ctor(weights=None, zero_init_residual=_flag(name, "zero_init_residual", zero_init_residual))
    stem_ch = net.conv1.out_channels
    if cifar_stem:
        net.conv1 = _kaiming(nn.Conv2d(in_channels, stem_ch, 3, stride=1, padding=1, bias=False))
        net.maxpool = nn.Identity()
    else:
        net.conv1 = _kaiming(nn.Conv2d(in_channels, stem_ch, 7, stride=2, padding=3, bias=False))
    net.out_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net


#: name -> (torchvision constructor, CIFAR stem (3x3 conv, no max-pool) or ImageNet stem, registry help)
TORCHVISION_RESNETS = {
    "resnet18": (
        "resnet18",
        True,
        "torchvision ResNet-18, CIFAR stem (3x3 conv, no max-pool), 32 px; out_dim 512",
    ),
    "resnet50": (
        "resnet50",
        True,
        "torchvision ResNet-50, CIFAR stem (3x3 conv, no max-pool), 32 px; out_dim 2048",
    ),
    "tv_resnet18": (
        "resnet18",
        False,
        "torchvision ResNet-18 with the ImageNet stem, 96-224 px; out_dim 512",
    ),
    "tv_resnet50": (
        "resnet50",
        False,
        "torchvision ResNet-50 with the ImageNet stem, 96-224 px; out_dim 2048",
    ),
}


def _torchvision_resnet(name: str, arch: str, cifar_stem: bool) -> Callable[..., nn.Module]:
    def build(in_channels: int = 3, zero_init_residual: bool = False) -> nn.Module:
        return _tv_resnet(name, _tv(arch), in_channels, cifar_stem, zero_init_residual)

    return build


for _name, (_arch, _cifar, _help) in TORCHVISION_RESNETS.items():
    BACKBONES.add(_name, _torchvision_resnet(_name, _arch, _cifar), _help)


@BACKBONES.register("mobilenet_v2", help="torchvision MobileNetV2, ImageNet stem, 96-224 px (width_mult)")
def mobilenet_v2(in_channels: int = 3, width_mult: float = 1.0) -> nn.Module:
    """MobileNetV2, out_dim 1280 (more when ``width_mult > 1``)."""
    name = "mobilenet_v2"
    in_channels = _positive_int(name, "in_channels", in_channels, MAX_CHANNELS)
    width_mult = _positive_float(name, "width_mult", width_mult, MAX_WIDTH_MULT)
    net = _tv("mobilenet_v2")(weights=None, width_mult=width_mult)
    stem = net.features[0][0]
    net.features[0][0] = _kaiming(
        nn.Conv2d(in_channels, stem.out_channels, 3, stride=2, padding=1, bias=False)
    )
    net.out_dim = net.last_channel
    net.classifier = nn.Identity()
    return net


@BACKBONES.register(
    "darts_cells", help="a found DARTS / CSNAS cell pair stacked into a network (genotype, width, layers)"
)
def darts_cells(
    in_channels: int = 3, genotype: dict[str, Any] | str | None = None, width: int = 16, layers: int = 8
) -> nn.Module:
    """A found cell pair (``genotype``: its JSON object or a file path); ``out_dim = nodes * 4 * width``."""
    name = "darts_cells"
    if isinstance(genotype, str):
        genotype = load_genotype(genotype)
    if isinstance(genotype, dict):
        genotype = CellGenotype.from_json(genotype)
    if not isinstance(genotype, CellGenotype):
        raise ConfigError(f"backbone {name!r}: genotype must be a cell genotype (JSON object or file path)")
    return CellNetwork(
        genotype,
        _positive_int(name, "in_channels", in_channels, MAX_CHANNELS),
        _positive_int(name, "width", width, MAX_WIDTH),
        _positive_int(name, "layers", layers, MAX_DEPTH),
    )


def backbone_names() -> list[str]:
    """All registered backbone names, sorted."""
    return BACKBONES.names()


def create_backbone(name: str, in_channels: int = 3, **kwargs: object) -> nn.Module:
    """Build backbone ``name`` for ``in_channels``-channel images; its ``out_dim`` is the feature width.

    Raises RegistryError for an unknown name and ConfigError for unknown or invalid kwargs.
    """
    factory = BACKBONES.get(name)
    try:
        inspect.signature(factory).bind(in_channels=in_channels, **kwargs)
    except TypeError as exc:
        accepted = ", ".join(p for p in inspect.signature(factory).parameters if p != "in_channels")
        raise ConfigError(f"backbone {name!r}: {exc}; it accepts: {accepted or 'no options'}") from None
    return factory(in_channels=in_channels, **kwargs)


@BACKBONES.register(
    "resnet_variant", help="a ResNet / ResNeXt variant of arXiv 2203.08130 from its genotype (JSON or file)"
)
def resnet_variant(in_channels: int = 3, genotype: dict[str, Any] | str | None = None) -> nn.Module:
    """A ``resnet-variants`` genotype's network; ``out_dim`` 64 / 256 small, 512 / 2048 full."""
    found = variant_from_config(ResNetVariantGenotype, genotype)
    return ResNetVariant(found, _positive_int("resnet_variant", "in_channels", in_channels, MAX_CHANNELS))


@BACKBONES.register(
    "mobilenet_variant", help="a MobileNetV2 variant of arXiv 2203.08130 from its genotype (JSON or file)"
)
def mobilenet_variant(in_channels: int = 3, genotype: dict[str, Any] | str | None = None) -> nn.Module:
    """A ``mobilenet-variants`` genotype's network; ``out_dim = 320 * max(1, width_mult)`` small."""
    found = variant_from_config(MobileNetVariantGenotype, genotype)
    in_channels = _positive_int("mobilenet_variant", "in_channels", in_channels, MAX_CHANNELS)
    return MobileNetVariant(found, in_channels)
