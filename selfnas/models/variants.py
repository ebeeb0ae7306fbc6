"""The networks of the ResNet and MobileNetV2 variant spaces of arXiv 2203.08130.

Both map ``N x in_channels x H x W`` float images to ``N x out_dim`` features (global average
pooled, flattened), like every backbone in :mod:`selfnas.models.backbones`.

ResNet variants (:class:`~selfnas.models.macro_genotype.ResNetVariantGenotype`), following
torchvision's ResNet / ResNeXt (``width_per_group``, ``groups``, stride on the 3x3 conv, "v1.5"):

- Stage ``i`` has a residual ("planes") width of ``base * 2**i`` (``base`` 16 small, 64 full) and
  a 3x3-conv width of ``width_per_group * groups * 2**i``; every 3x3 conv is grouped (ResNeXt).
  The first block of every stage after the first has stride 2; a 1x1 conv-BN shortcut is used
  where the shape changes.
- ``basic``: 3x3 (in -> width, grouped) then 3x3 (width -> planes, grouped); output ``planes``.
  With ``width_per_group = base`` and ``groups = 1`` this is the standard basic block.
- ``bottleneck``: 1x1 (in -> width), 3x3 grouped (width -> width), 1x1 (width -> 4 * planes).
- ``out_dim`` is ``planes`` of the last stage, times 4 for bottlenecks: 64 / 256 small, 512 / 2048
  full. Full scale with ``basic [2,2,2,2] w64 g1`` is exactly torchvision's ResNet-18,
  ``bottleneck [3,4,6,3] w64 g1`` ResNet-50 and ``bottleneck [3,4,6,3] w4 g32`` ResNeXt-50 32x4d.
- Stems: small is the CIFAR one (3x3 conv stride 1 to ``base`` channels, BN, ReLU, no max-pool),
  for 28-32 px images; full is the ImageNet one (7x7 conv stride 2, BN, ReLU, 3x3 max-pool
  stride 2), for 96-224 px.

MobileNetV2 variants (:class:`~selfnas.models.macro_genotype.MobileNetVariantGenotype`), built from
torchvision's ``InvertedResidual`` (expansion 6, 1 in the first stage, as in MobileNetV2):

- Full: MobileNetV2's 7 stages (t, c, s) = (1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2),
  (6, 96, 1), (6, 160, 2), (6, 320, 1) behind a 3x3 stride-2 stem of 32 channels, then a 1x1
  conv to 1280 channels; every width times ``width_mult`` rounded to a multiple of 8, the last
  one only ever scaled up. ``repeats [1,2,3,4,3,3,1] x1.0`` is exactly torchvision's MobileNetV2.
- Small: the same 7 stages at a quarter of the widths (stem 8, stages 4, 6, 8, 16, 24, 40, 80,
  last conv 320), rounded to multiples of 4, a stride-1 stem and strides (1, 1, 2, 2, 1, 2, 1):
  28 px inputs end at 4 x 4.
- ``out_dim`` is the last conv's width: ``320 * max(1, width_mult)`` small, ``1280 * ...`` full.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from selfnas.errors import ConfigError
from selfnas.models.genotype import load_genotype
from selfnas.models.macro_genotype import (
    RESNET_BASE_WIDTH,
    MobileNetVariantGenotype,
    ResNetVariantGenotype,
)
from selfnas.models.pointwise import StridedPointwiseConv

BOTTLENECK_EXPANSION = 4
#: (expansion t, channels c, stride s) per MobileNetV2 stage; small has a quarter of the widths
MOBILENET_FULL_STAGES = ((1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1))
MOBILENET_SMALL_STAGES = ((1, 4, 1), (6, 6, 1), (6, 8, 2), (6, 16, 2), (6, 24, 1), (6, 40, 2), (6, 80, 1))
#: scale -> (stem channels, stem stride, last conv channels, channel rounding)
MOBILENET_SHAPE = {"full": (32, 2, 1280, 8), "small": (8, 1, 320, 4)}


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    conv = (
        StridedPointwiseConv(in_ch, out_ch, stride)
        if kernel == 1 and groups == 1
        else nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
    )
    return nn.Sequential(conv, nn.BatchNorm2d(out_ch))


def _init(net: nn.Module) -> None:
    """torchvision's initialisation: Kaiming normal (fan out) convs, BN weight 1 and bias 0."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VariantBlock(nn.Module):
    """A basic or bottleneck residual block with grouped 3x3 convs (see the module docstring)."""

    def __init__(self, kind: str, in_ch: int, width: int, planes: int, stride: int, groups: int) -> None:
        super().__init__()
        if kind == "basic":
            out_ch = planes
            self.body = nn.Sequential(
                _conv_bn(in_ch, width, 3, stride, groups),
                nn.ReLU(inplace=True),
                _conv_bn(width, out_ch, 3, 1, groups),
            )
        else:
            out_ch = planes * BOTTLENECK_EXPANSION
            self.body = nn.Sequential(
                _conv_bn(in_ch, width, 1),
                nn.ReLU(inplace=True),
                _conv_bn(width, width, 3, stride, groups),
                nn.ReLU(inplace=True),
                _conv_bn(width, out_ch, 1),
            )
        self.out_channels = out_ch
        self.shortcut = (
            nn.Identity() if stride == 1 and in_ch == out_ch else _conv_bn(in_ch, out_ch, 1, stride)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x Cin x H x W
        return self.relu(self.body(x) + self.shortcut(x))  # N x Cout x H/s x W/s


class ResNetVariant(nn.Module):
    """A ResNet / ResNeXt variant built from its genotype; ``out_dim`` is the pooled feature width."""

    def __init__(self, genotype: ResNetVariantGenotype, in_channels: int = 3) -> None:
        super().__init__()
        self.genotype = genotype
        base = RESNET_BASE_WIDTH[genotype.scale]
        if genotype.scale == "small":
            self.stem = nn.Sequential(_conv_bn(in_channels, base, 3), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                _conv_bn(in_channels, base, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            )
        stages: list[nn.Module] = []
        in_ch = base
        for i, depth in enumerate(genotype.blocks):
            planes, width = base * 2**i, genotype.width_per_group * genotype.groups * 2**i
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                block = VariantBlock(genotype.block, in_ch, width, planes, stride, genotype.groups)
                blocks.append(block)
                in_ch = block.out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim: int = in_ch
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x C x H x W
        x = self.stages(self.stem(x))  # N x out_dim x H/s x W/s
        return torch.flatten(self.pool(x), 1)  # N x out_dim


def _make_divisible(value: float, divisor: int) -> int:
    from torchvision.models.mobilenetv2 import _make_divisible

    return int(_make_divisible(value, divisor))


class MobileNetVariant(nn.Module):
    """A MobileNetV2 variant built from its genotype; ``out_dim`` is the last conv's width."""

    def __init__(self, genotype: MobileNetVariantGenotype, in_channels: int = 3) -> None:
        super().__init__()
        # torchvision is imported here, not at module level: it pulls in torch._dynamo (~2 s)
        from torchvision.models.mobilenetv2 import InvertedResidual

        self.genotype = genotype
        stem_ch, stem_stride, last_ch, divisor = MOBILENET_SHAPE[genotype.scale]
        stages = MOBILENET_SMALL_STAGES if genotype.scale == "small" else MOBILENET_FULL_STAGES
        mult = genotype.width_mult
        in_ch = _make_divisible(stem_ch * mult, divisor)
        layers: list[nn.Module] = [_conv_bn(in_channels, in_ch, 3, stem_stride), nn.ReLU6(inplace=True)]
        for (t, c, s), n in zip(stages, genotype.repeats, strict=True):
            out_ch = _make_divisible(c * mult, divisor)
            for j in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, s if j == 0 else 1, t))
                in_ch = out_ch
        self.out_dim: int = _make_divisible(last_ch * max(1.0, mult), divisor)
        layers += [_conv_bn(in_ch, self.out_dim, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x C x H x W
        x = self.features(x)  # N x out_dim x H/s x W/s
        return torch.flatten(self.pool(x), 1)  # N x out_dim


def build_variant(
    genotype: ResNetVariantGenotype | MobileNetVariantGenotype, in_channels: int = 3
) -> nn.Module:
    """The network of a macro genotype."""
    if isinstance(genotype, ResNetVariantGenotype):
        return ResNetVariant(genotype, in_channels)
    return MobileNetVariant(genotype, in_channels)


def variant_from_config(
    kind: type[ResNetVariantGenotype] | type[MobileNetVariantGenotype], genotype: Any
) -> ResNetVariantGenotype | MobileNetVariantGenotype:
    """A ``kind`` genotype from a genotype object, its JSON object or a file path (validated)."""
    if isinstance(genotype, str):
        genotype = load_genotype(genotype)
    elif isinstance(genotype, dict):
        genotype = kind.from_json(genotype)
    if not isinstance(genotype, kind):
        raise ConfigError(
            f"backbone {kind.backbone!r}: genotype must be a {kind.space} genotype "
            f"(JSON object or file path), got {type(genotype).__name__}"
        )
    return genotype
