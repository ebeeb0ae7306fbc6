"""The DARTS / CSNAS cell search space and its supernet.

Each intermediate node sums a :class:`MixedOp` over an edge from every earlier state
(2 inputs + nodes ``< i``), so 4 nodes have 14 edges. The channel plan, the stem and the
discrete cell network that a found genotype builds live in :mod:`selfnas.models.cells`.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

import torch
from torch import nn

from selfnas.errors import GenotypeError
from selfnas.models.cell_genotype import MAX_NODES, CellGenotype
from selfnas.models.cell_ops import (
    CELL_OPS,
    DARTS_CELL_OPS,
    PARAMETER_FREE_CELL_OPS,
    make_search_cell_op,
)
from selfnas.models.cells import CellShape, cell_shapes, edge_stride, preprocess, stem
from selfnas.nas.mixed_op import MixedOp

NodeChoice = tuple[tuple[str, int], tuple[str, int]]


@dataclass(frozen=True)
class CellSearchSpace:
    """Per node: 2 distinct inputs among its predecessors, one non-``none`` op on each.

    ``enumerate_node_choices(node)`` lists one node's choices (inputs ascending), the same
    lists that ``sample`` draws from, so a sampler can pick by index; ``size`` counts the
    (normal, reduction) cell pairs.
    """

    nodes: int = 4
    ops: tuple[str, ...] = DARTS_CELL_OPS
    C: int = 16
    layers: int = 8

    def __post_init__(self) -> None:
        unknown = [op for op in self.ops if op not in CELL_OPS]
        if unknown:
            raise GenotypeError(f"unknown cell op {unknown[0]!r}; known: {', '.join(CELL_OPS.names())}")
        if len(set(self.ops)) != len(self.ops) or not self.choice_ops:
            raise GenotypeError("a cell search space needs distinct ops, at least one of them not 'none'")
        if not 1 <= self.nodes <= MAX_NODES or self.C < 1 or self.layers < 1:
            raise GenotypeError(f"a cell search space needs 1..{MAX_NODES} nodes, C >= 1 and layers >= 1")

    @property
    def edges(self) -> int:
        return sum(2 + i for i in range(self.nodes))

    @property
    def choice_ops(self) -> tuple[str, ...]:
        """The ops a discrete edge may carry: all but ``none``."""
        return tuple(op for op in self.ops if op != "none")

    @property
    def size(self) -> int:
        per_cell = math.prod(math.comb(2 + i, 2) * len(self.choice_ops) ** 2 for i in range(self.nodes))
        return per_cell**2

    def enumerate_node_choices(self, node: int) -> list[NodeChoice]:
        inputs = itertools.combinations(range(2 + node), 2)
        ops = list(itertools.product(self.choice_ops, repeat=2))
        return [((a, i), (b, j)) for i, j in inputs for a, b in ops]

    def genotype(self, normal: list[NodeChoice], reduce: list[NodeChoice]) -> CellGenotype:
        """The genotype of one choice per node for each cell."""
        flat = itertools.chain.from_iterable
        return CellGenotype(tuple(flat(normal)), tuple(flat(reduce)), self.nodes)

    def sample(self, rng: random.Random) -> CellGenotype:
        """A uniformly random cell pair."""
        choices = [self.enumerate_node_choices(node) for node in range(self.nodes)]
        return self.genotype([rng.choice(c) for c in choices], [rng.choice(c) for c in choices])


class SearchCell(nn.Module):
    """One supernet cell: a :class:`MixedOp` of every space op on each of the ``edges`` edges."""

    def __init__(self, space: CellSearchSpace, shape: CellShape) -> None:
        super().__init__()
        self.reduction = shape.reduction
        self.nodes = space.nodes
        self.pre0, self.pre1 = preprocess(shape, affine=False)
        self.edges = nn.ModuleList(
            MixedOp({op: make_search_cell_op(op, shape.c, edge_stride(shape, src)) for op in space.ops})
            for node in range(space.nodes)
            for src in range(2 + node)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """weights: edges x ops, each row softmaxed."""
        states = [self.pre0(s0), self.pre1(s1)]  # 2 x (N x c x H x W)
        offset = 0
        for _ in range(self.nodes):
            node = sum(self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(node)  # N x c x H/s x W/s
        return torch.cat(states[2:], dim=1)  # N x nodes*c x H/s x W/s


class CellSupernet(nn.Module):
    """The supernet of a :class:`CellSearchSpace`: N x in_channels x H x W -> N x out_dim.

    ``normal_alpha`` and ``reduce_alpha`` (edges x ops, ``1e-3 * randn`` as in DARTS) are the
    architecture logits; the trainer treats parameters named ``*alpha`` as architecture ones.
    """

    def __init__(self, space: CellSearchSpace, in_channels: int = 3) -> None:
        super().__init__()
        shapes = cell_shapes(space.C, space.layers, space.nodes)
        self.space = space
        self.stem = stem(in_channels, space.C)
        self.cells = nn.ModuleList(SearchCell(space, shape) for shape in shapes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim: int = space.nodes * shapes[-1].c
        self.normal_alpha = nn.Parameter(1e-3 * torch.randn(space.edges, len(space.ops)))
        self.reduce_alpha = nn.Parameter(1e-3 * torch.randn(space.edges, len(space.ops)))

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """softmax(alpha) per edge for the normal and the reduction cell: 2 x (edges x ops)."""
        return torch.softmax(self.normal_alpha, dim=-1), torch.softmax(self.reduce_alpha, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x in_channels x H x W
        normal, reduce = self.weights()
        s0 = s1 = self.stem(x)  # N x 3C x H x W
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)  # N x nodes*c x H' x W'
        return torch.flatten(self.pool(s1), 1)  # N x out_dim

    def derive(self) -> CellGenotype:
        """Per node, the 2 incoming edges whose best non-``none`` op weighs most, with that op.

        Ties go to the earlier input, then the earlier op; pairs are listed by input.
        """
        normal, reduce = (self._derive_cell(w.detach().cpu()) for w in self.weights())
        return CellGenotype(normal, reduce, self.space.nodes)

    def _derive_cell(self, w: torch.Tensor) -> tuple[tuple[str, int], ...]:
        choices = [i for i, op in enumerate(self.space.ops) if op != "none"]
        pairs: list[tuple[str, int]] = []
        offset = 0
        for node in range(self.space.nodes):
            best = [max(choices, key=lambda k, e=offset + src: float(w[e, k])) for src in range(2 + node)]
            strength = [float(w[offset + src, best[src]]) for src in range(2 + node)]
            kept = sorted(sorted(range(2 + node), key=lambda src: -strength[src])[:2])
            pairs += [(self.space.ops[best[src]], src) for src in kept]
            offset += 2 + node
        return tuple(pairs)

    def parameter_free_count(self) -> int:
        """Edges of the derived normal cell with a parameter-free op (the DARTS collapse sign)."""
        return sum(op in PARAMETER_FREE_CELL_OPS for op, _ in self.derive().normal)

    def entropy(self) -> float:
        """Mean entropy of the per-edge op distributions of both cells (nats); log(ops) = undecided."""
        w = torch.cat(self.weights()).detach()
        return float(-(w * w.clamp_min(1e-12).log()).sum(dim=1).mean())
