"""The op table of DARTS / CSNAS cells: name -> constructor ``(C, stride, affine) -> nn.Module``.

Every op maps ``N x C x H x W`` to ``N x C x ceil(H/s) x ceil(W/s)`` for stride ``s`` in
{1, 2}, so the candidates of one edge can be summed. ``affine=False`` (BatchNorm without
scale and shift) is what the supernet uses; a discrete network uses ``affine=True``.
ReLUs are never in-place: the candidates of a mixed op all read the same input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from selfnas.errors import GenotypeError
from selfnas.models.pointwise import StridedPointwiseConv
from selfnas.registry import Registry

CellOpFactory = Callable[[int, int, bool], nn.Module]
CELL_OPS: Registry[CellOpFactory] = Registry("cell op")

#: ops without weights (``skip_connect`` only at stride 1): the DARTS collapse monitor counts these
PARAMETER_FREE_CELL_OPS = frozenset({"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"})


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (a missing edge)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x C x H x W
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])  # N x C x H/s x W/s

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias) -> BatchNorm: N x C_in x H x W -> N x C_out x H' x W'."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise conv (dilated) -> pointwise 1x1 conv -> BatchNorm."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in, bias=False
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked ReLU-depthwise-pointwise-BN blocks (undilated); the first one carries the stride."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halve H and W without losing pixels: two 1x1 stride-2 convs, on x and on x shifted by one.

    The shifted copy is zero-padded at the far edge, so odd sizes give ceil(H/2) on both halves.
    N x C_in x H x W -> N x C_out x ceil(H/2) x ceil(W/2).
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = StridedPointwiseConv(c_in, c_out // 2, 2)
        self.conv_2 = StridedPointwiseConv(c_in, c_out - c_out // 2, 2)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x C_in x H x W
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # N x C_in x H x W
        y = torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)  # N x C_out x H/2 x W/2
        return self.bn(y)


def _pool(kind: str) -> CellOpFactory:
    def make(c: int, stride: int, affine: bool) -> nn.Module:
        if kind == "max":
            return nn.MaxPool2d(3, stride=stride, padding=1)
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)

    return make


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine)


def _sep(kernel: int) -> CellOpFactory:
    return lambda c, stride, affine: SepConv(c, c, kernel, stride, kernel // 2, affine)


def _dil(kernel: int) -> CellOpFactory:
    return lambda c, stride, affine: DilConv(c, c, kernel, stride, kernel - 1, 2, affine)


CELL_OPS.add("none", lambda c, stride, affine: Zero(stride), "zeros: no edge")
CELL_OPS.add("max_pool_3x3", _pool("max"), "3x3 max pool")
CELL_OPS.add("avg_pool_3x3", _pool("avg"), "3x3 average pool (padding not counted)")
CELL_OPS.add("skip_connect", _skip, "identity; factorized reduction at stride 2")
CELL_OPS.add("sep_conv_3x3", _sep(3), "two ReLU-depthwise 3x3-pointwise-BN blocks")
CELL_OPS.add("sep_conv_5x5", _sep(5), "two ReLU-depthwise 5x5-pointwise-BN blocks")
CELL_OPS.add("dil_conv_3x3", _dil(3), "ReLU-depthwise 3x3 dilation 2-pointwise-BN")
CELL_OPS.add("dil_conv_5x5", _dil(5), "ReLU-depthwise 5x5 dilation 2-pointwise-BN")

#: the eight DARTS candidates in their usual order
DARTS_CELL_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)


def make_cell_op(name: str, c: int, stride: int, affine: bool = True) -> nn.Module:
    """Build one op by name; an unknown name is a :class:`GenotypeError`."""
    if name not in CELL_OPS:
        raise GenotypeError(f"unknown cell op {str(name)[:40]!r}; known ops: {', '.join(CELL_OPS.names())}")
    return CELL_OPS.get(name)(c, stride, affine)


def make_search_cell_op(name: str, c: int, stride: int) -> nn.Module:
    """A supernet candidate: BatchNorm without affine everywhere, also after pooling."""
    op = make_cell_op(name, c, stride, affine=False)
    if name.endswith("pool_3x3"):
        return nn.Sequential(op, nn.BatchNorm2d(c, affine=False))
    return op
