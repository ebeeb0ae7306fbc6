"""Networks of found DARTS / CSNAS cells: the channel plan, the discrete cell and the cell network.

A cell reads the outputs of the two previous cells (each preprocessed to C channels) and
computes ``nodes`` intermediate nodes; node ``i`` sums one op over each of its 2 chosen edges
(:class:`~selfnas.models.cell_genotype.CellGenotype`). The cell outputs the concat of its nodes
(``nodes * C`` channels). A network is a 3x3 conv stem (``3 * C`` channels) and ``layers``
cells; the cells at ``layers // 3`` and ``2 * layers // 3`` are reductions (stride 2 on the
edges from the inputs, C doubled), then global average pooling:
``N x in_channels x H x W -> N x out_dim`` with ``out_dim = nodes * C_last``.
The supernet that searches these cells is :mod:`selfnas.nas.spaces.cells`.

DARTS's evaluation network adds two training aids, both inert unless asked for: drop-path
(``CellNetwork.drop_path_prob``: in training mode each sample's output of every edge that is not an
identity is zeroed with that probability and the kept ones scaled by ``1 / (1 - p)``) and an
auxiliary classifier (:class:`AuxiliaryHead`) on the output of cell ``2 * layers // 3``, which
:meth:`CellNetwork.forward_with_auxiliary` returns next to the features.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
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


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """DARTS's drop-path: zero each sample of ``x`` (N x ...) with probability ``p`` (a draw of the
    global torch RNG per sample) and scale the others by ``1 / (1 - p)``, so the mean is kept."""
    if p <= 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep  # N x ... (not in place: autograd needs x)


class DiscreteCell(nn.Module):
    """One found cell: (N x c_pp x 2H x 2W or H x W, N x c_p x H x W) -> N x nodes*c x H/s x W/s."""

    def __init__(self, genotype: CellGenotype, shape: CellShape) -> None:
        super().__init__()
        self.reduction = shape.reduction
        self.pre0, self.pre1 = preprocess(shape, affine=True)
        self.pairs = genotype.reduce if shape.reduction else genotype.normal
        self.ops = nn.ModuleList(make_cell_op(op, shape.c, edge_stride(shape, src)) for op, src in self.pairs)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        """``drop_prob``: drop-path on every non-identity edge, in training mode only."""
        states = [self.pre0(s0), self.pre1(s1)]  # 2 x (N x c x H x W)
        p = drop_prob if self.training else 0.0
        for i in range(len(self.pairs) // 2):
            node = self._edge(2 * i, states, p) + self._edge(2 * i + 1, states, p)  # N x c x H/s x W/s
            states.append(node)
        return torch.cat(states[2:], dim=1)  # N x nodes*c x H/s x W/s

    def _edge(self, k: int, states: list[torch.Tensor], p: float) -> torch.Tensor:
        """Edge ``k``'s op on its input, drop-pathed with probability ``p`` unless it is an identity."""
        op = self.ops[k]
        h = op(states[self.pairs[k][1]])  # N x c x H/s x W/s
        return h if isinstance(op, nn.Identity) else drop_path(h, p)


class AuxiliaryHead(nn.Module):
    """DARTS's auxiliary CIFAR classifier (``AuxiliaryHeadCIFAR``): N x C x 8 x 8 -> N x classes.

    ReLU, 5x5 average pool at stride 3 (8 x 8 -> 2 x 2), 1x1 conv to 128 + BN + ReLU, 2x2 conv to 768
    + BN + ReLU, linear. A map smaller than 8 x 8 (28 px images give 7 x 7) is average-pooled to
    2 x 2 instead, and a larger result of the 2x2 conv is averaged, so any size works with the same
    weights (those of DARTS's head).
    """

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(c_in, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x C x H x W
        x = torch.relu(x)
        small = min(x.shape[-2:]) < 8
        x = F.adaptive_avg_pool2d(x, 2) if small else self.pool(x)  # N x C x 2 x 2 (at 8 x 8 input)
        x = self.features(x)  # N x 768 x 1 x 1 (at 8 x 8 input)
        return self.classifier(x.mean(dim=(2, 3)))  # N x classes


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
        #: drop-path probability of the non-identity edges in training mode (a trainer raises it)
        self.drop_path_prob = 0.0
        #: the cell whose output an auxiliary head reads (DARTS: ``2 * layers // 3``), and its channels
        self.auxiliary_index = 2 * layers // 3
        self.auxiliary_channels: int = genotype.nodes * shapes[self.auxiliary_index].c

    @classmethod
    def from_genotype(
        cls, genotype: CellGenotype | dict[str, Any], in_channels: int = 3, C: int = 16, layers: int = 8
    ) -> CellNetwork:
        """From a :class:`CellGenotype` or its JSON object (validated, never eval'd)."""
        if not isinstance(genotype, CellGenotype):
            genotype = CellGenotype.from_json(genotype)
        return cls(genotype, in_channels, C, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x in_channels x H x W
        return self.forward_with_auxiliary(x)[0]  # N x out_dim

    def forward_with_auxiliary(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features N x out_dim, output of cell ``auxiliary_index`` N x auxiliary_channels x H' x W')."""
        s0 = s1 = self.stem(x)  # N x 3C x H x W
        hidden = s1
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)  # N x nodes*c x H' x W'
            if i == self.auxiliary_index:
                hidden = s1
        return torch.flatten(self.pool(s1), 1), hidden  # N x out_dim, N x aux_c x H' x W'
