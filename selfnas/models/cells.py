"""Networks of found DARTS / CSNAS cells: the channel plan, the discrete cell and the cell network.

A cell reads the outputs of the two previous cells (each preprocessed to C channels) and
computes ``nodes`` intermediate nodes; node ``i`` sums one op over each of its 2 chosen edges
(:class:`~selfnas.models.cell_genotype.CellGenotype`). The cell outputs the concat of its nodes
(``nodes * C`` channels). A network is a 3x3 conv stem (``3 * C`` channels) and ``layers``
cells; the cells at ``layers // 3`` and ``2 * layers // 3`` are reductions (stride 2 on the
edges from the inputs, C doubled), then global average pooling:
``N x in_channels x H x W -> N x out_dim`` with ``out_dim = nodes * C_last``.
The supernet that searches these cells is :mod:`selfnas.nas.spaces.cells`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.cell_ops import FactorizedReduce, ReLUConvBN, make_cell_op

STEM_MULTIPLIER = 3


class CellShape(NamedTuple):
    """Channels of one cell: its two inputs, its nodes, and whether it or the previous one reduces."""

    c_pp: int
    c_p: int
    c: int
    reduction: bool
    reduction_prev: bool


def cell_shapes(C: int, layers: int, nodes: int) -> list[CellShape]:
    """The DARTS channel plan: C doubles at the reduction cells ``layers // 3`` and ``2 * layers // 3``."""
    shapes: list[CellShape] = []
    c_pp, c_p, c, reduction_prev = STEM_MULTIPLIER * C, STEM_MULTIPLIER * C, C, False
    for layer in range(layers):
        reduction = layer in (layers // 3, 2 * layers // 3)
        c = 2 * c if reduction else c
        shapes.append(CellShape(c_pp, c_p, c, reduction, reduction_prev))
        c_pp, c_p, reduction_prev = c_p, nodes * c, reduction
    return shapes


def preprocess(shape: CellShape, affine: bool) -> tuple[nn.Module, nn.Module]:
    pre0: nn.Module = (
        FactorizedReduce(shape.c_pp, shape.c, affine)
        if shape.reduction_prev
        else ReLUConvBN(shape.c_pp, shape.c, 1, 1, 0, affine)
    )
    return pre0, ReLUConvBN(shape.c_p, shape.c, 1, 1, 0, affine)


def edge_stride(shape: CellShape, src: int) -> int:
    return 2 if shape.reduction and src < 2 else 1


def stem(in_channels: int, C: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, STEM_MULTIPLIER * C, 3, padding=1, bias=False),
        nn.BatchNorm2d(STEM_MULTIPLIER * C),
    )


class DiscreteCell(nn.Module):
    """One found cell: (N x c_pp x 2H x 2W or H x W, N x c_p x H x W) -> N x nodes*c x H/s x W/s."""

    def __init__(self, genotype: CellGenotype, shape: CellShape) -> None:
        super().__init__()
        self.reduction = shape.reduction
        self.pre0, self.pre1 = preprocess(shape, affine=True)
        self.pairs = genotype.reduce if shape.reduction else genotype.normal
        self.ops = nn.ModuleList(make_cell_op(op, shape.c, edge_stride(shape, src)) for op, src in self.pairs)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]  # 2 x (N x c x H x W)
        for i in range(len(self.pairs) // 2):
            (_, a), (_, b) = self.pairs[2 * i : 2 * i + 2]
            states.append(self.ops[2 * i](states[a]) + self.ops[2 * i + 1](states[b]))  # N x c x H/s x W/s
        return torch.cat(states[2:], dim=1)  # N x nodes*c x H/s x W/s


class CellNetwork(nn.Module):
    """A found cell pair stacked into a backbone: N x in_channels x H x W -> N x out_dim."""

    def __init__(self, genotype: CellGenotype, in_channels: int, C: int, layers: int) -> None:
        super().__init__()
        shapes = cell_shapes(C, layers, genotype.nodes)
        self.genotype = genotype
        self.stem = stem(in_channels, C)
        self.cells = nn.ModuleList(DiscreteCell(genotype, shape) for shape in shapes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim: int = genotype.nodes * shapes[-1].c

    @classmethod
    def from_genotype(
        cls, genotype: CellGenotype | dict[str, Any], in_channels: int = 3, C: int = 16, layers: int = 8
    ) -> CellNetwork:
        """From a :class:`CellGenotype` or its JSON object (validated, never eval'd)."""
        if not isinstance(genotype, CellGenotype):
            genotype = CellGenotype.from_json(genotype)
        return cls(genotype, in_channels, C, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x in_channels x H x W
        s0 = s1 = self.stem(x)  # N x 3C x H x W
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)  # N x nodes*c x H' x W'
        return torch.flatten(self.pool(s1), 1)  # N x out_dim
