"""NASiam's head search space: a chain of mixed layers, then a fixed final layer.

Projector: ``layers`` (default 6) mixed layers at ``width`` then Linear + BatchNorm without
affine; predictor: ``layers`` (default 4) mixed layers then Linear. Each mixed layer chooses
one op of :data:`HEAD_SEARCH_OPS` (the shared head op table). When ``width`` differs from
the input width, a fixed Linear-BN-ReLU stem maps the input to ``width`` first (NASiam
searches at the backbone's own width, which is the default).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from selfnas.config import HEAD_SEARCH_OPS, SearchConfig
from selfnas.errors import GenotypeError
from selfnas.models.head_ops import HEAD_OPS, PARAMETER_FREE_HEAD_OPS, make_head_op
from selfnas.models.heads import HeadLayer, HeadSpec
from selfnas.nas.mixed_op import MixedOp

STEM_OP = "linear_bn_relu"


@dataclass(frozen=True)
class HeadSearchSpace:
    """A discrete space: one op per layer. ``size`` and ``enumerate`` serve tests and samplers."""

    layers: int
    width: int
    out_dim: int
    final_op: str
    ops: tuple[str, ...] = HEAD_SEARCH_OPS

    def __post_init__(self) -> None:
        unknown = [op for op in (*self.ops, self.final_op) if op not in HEAD_OPS]
        if unknown:
            raise GenotypeError(f"unknown head op {unknown[0]!r}; known: {', '.join(HEAD_OPS)}")
        if self.layers < 1 or self.width < 1 or self.out_dim < 1 or not self.ops:
            raise GenotypeError("a head search space needs >= 1 layer, positive widths and >= 1 op")

    @property
    def size(self) -> int:
        return len(self.ops) ** self.layers

    def enumerate(self) -> Iterator[tuple[str, ...]]:
        return itertools.product(self.ops, repeat=self.layers)

    def spec(self, choices: tuple[str, ...] | list[str], in_dim: int) -> HeadSpec:
        """The discrete head for one op per layer."""
        if len(choices) != self.layers or any(c not in self.ops for c in choices):
            raise GenotypeError(f"choices must name {self.layers} ops of {self.ops}")
        stem = [HeadLayer(STEM_OP, self.width)] if in_dim != self.width else []
        chain = [HeadLayer(op, self.width) for op in choices]
        return HeadSpec(tuple(stem + chain + [HeadLayer(self.final_op, self.out_dim)]))


def head_spaces(
    search: SearchConfig, proj_out: int, backbone_dim: int, needs_predictor: bool
) -> tuple[HeadSearchSpace, HeadSearchSpace | None]:
    """The projector space (at ``search.width`` or the backbone's width, ending in Linear + BN
    without affine) and, for a method with a predictor, the predictor space (at
    ``search.pred_width`` or ``proj_out``, ending in Linear), as ``search`` configures them."""
    ops = tuple(search.ops)
    projector = HeadSearchSpace(
        search.projector_layers, search.width or backbone_dim, proj_out, "linear_bn_noaffine", ops
    )
    if not needs_predictor:
        return projector, None
    predictor = HeadSearchSpace(
        search.predictor_layers, search.pred_width or proj_out, proj_out, "linear", ops
    )
    return projector, predictor


class SearchHead(nn.Module):
    """The supernet of a :class:`HeadSearchSpace`: N x in_dim -> N x out_dim.

    ``alpha`` (layers x ops) holds the architecture logits; they start at zero (uniform
    mixture) as in NASiam. Only parameters named ``alpha`` are architecture parameters.
    """

    def __init__(self, space: HeadSearchSpace, in_dim: int) -> None:
        super().__init__()
        self.space = space
        self.in_dim = in_dim
        self.out_dim = space.out_dim
        self.stem = make_head_op(STEM_OP, in_dim, space.width) if in_dim != space.width else nn.Identity()
        self.mixed = nn.ModuleList(
            MixedOp({op: make_head_op(op, space.width, space.width) for op in space.ops})
            for _ in range(space.layers)
        )
        self.final = make_head_op(space.final_op, space.width, space.out_dim)
        self.alpha = nn.Parameter(torch.zeros(space.layers, len(space.ops)))

    def weights(self) -> torch.Tensor:
        """softmax(alpha) per layer: layers x ops."""
        return torch.softmax(self.alpha, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weights()
        x = self.stem(x)  # N x width
        for layer, mixed in enumerate(self.mixed):
            x = mixed(x, w[layer])  # N x width
        return self.final(x)  # N x out_dim

    def derive(self, max_parameter_free: int | None = None) -> HeadSpec:
        """Argmax op per layer (ties -> the earlier op); optionally cap parameter-free picks.

        With a cap, the parameter-free picks with the smallest weight are replaced by the
        strongest op that has parameters, until at most ``max_parameter_free`` remain.
        """
        w = self.weights().detach().cpu()
        picks = [self.space.ops[int(i)] for i in w.argmax(dim=1)]
        if max_parameter_free is not None:
            param_idx = [i for i, op in enumerate(self.space.ops) if op not in PARAMETER_FREE_HEAD_OPS]
            free = [layer for layer, op in enumerate(picks) if op in PARAMETER_FREE_HEAD_OPS]
            free.sort(key=lambda layer: float(w[layer].max()))
            while len(free) > max_parameter_free and param_idx:
                layer = free.pop(0)
                best = max(param_idx, key=lambda i: float(w[layer, i]))
                picks[layer] = self.space.ops[best]
        return self.space.spec(picks, self.in_dim)

    def parameter_free_count(self) -> int:
        return sum(op.op in PARAMETER_FREE_HEAD_OPS for op in self.derive().layers)

    def entropy(self) -> float:
        """Mean entropy of the per-layer op distributions (nats); log(ops) = undecided."""
        w = self.weights().detach()
        return float(-(w * w.clamp_min(1e-12).log()).sum(dim=1).mean())
