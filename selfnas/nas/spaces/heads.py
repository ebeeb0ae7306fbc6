"""NASiam's head search space: a chain of mixed layers, then (mostly) a fixed final layer.

Two layouts (``search.layout``):

- ``selfnas`` (default), every method alike. Projector: ``search.projector_layers`` (6) mixed
  layers at ``width`` then Linear + BatchNorm without affine; predictor:
  ``search.predictor_layers`` (4) mixed layers then Linear. When ``width`` differs from the
  input width, a fixed Linear-BN-ReLU stem maps the input to ``width`` first.
- ``nasiam``, as NASiam's code builds each method's heads (its record's ``nasiam_heads``: layer
  counts and final layers, a predictor bottleneck of ``proj_out // 4``). No stem: the first
  searched layer maps the input to the hidden width and, without a final layer, the last one
  maps it to the output; each op there is what NASiam's wrappers make of it
  (:func:`nasiam_layer_op`), and pools are followed by BatchNorm.

Each mixed layer chooses one op of ``search.ops`` (default :data:`HEAD_SEARCH_OPS`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from selfnas.config import HEAD_SEARCH_OPS, SearchConfig
from selfnas.errors import GenotypeError
from selfnas.methods import MethodRecord
from selfnas.models.head_ops import HEAD_OPS, PARAMETER_FREE_HEAD_OPS, make_head_op
from selfnas.models.heads import HEAD_LAYOUTS, HeadLayer, HeadSpec, nasiam_layer_op
from selfnas.nas.mixed_op import MixedOp

STEM_OP = "linear_bn_relu"


@dataclass(frozen=True)
class HeadSearchSpace:
    """A discrete space: one op per layer. ``size`` and ``enumerate`` serve tests and samplers.

    ``width`` is the searched layers' (hidden) width; ``final_op`` maps it to ``out_dim``, or with
    ``None`` (``nasiam`` layout only) the last searched layer does.
    """

    layers: int
    width: int
    out_dim: int
    final_op: str | None
    ops: tuple[str, ...] = HEAD_SEARCH_OPS
    layout: str = "selfnas"

    def __post_init__(self) -> None:
        unknown = [op for op in (*self.ops, self.final_op) if op is not None and op not in HEAD_OPS]
        if unknown:
            raise GenotypeError(f"unknown head op {unknown[0]!r}; known: {', '.join(HEAD_OPS)}")
        if self.layers < 1 or self.width < 1 or self.out_dim < 1 or not self.ops:
            raise GenotypeError("a head search space needs >= 1 layer, positive widths and >= 1 op")
        if self.layout not in HEAD_LAYOUTS:
            raise GenotypeError(f"unknown head layout {self.layout!r}; known: {', '.join(HEAD_LAYOUTS)}")
        if self.final_op is None and self.layout == "selfnas":
            raise GenotypeError("the selfnas head layout ends in a fixed final op; name one")

    def layer_dims(self, in_dim: int) -> list[tuple[int, int]]:
        """(in, out) width of each searched layer on inputs of width ``in_dim``."""
        if self.layout == "selfnas":  # the stem has mapped the input to ``width``
            return [(self.width, self.width)] * self.layers
        last = self.width if self.final_op else self.out_dim
        ins = [in_dim] + [self.width] * (self.layers - 1)
        outs = [self.width] * (self.layers - 1) + [last]
        return list(zip(ins, outs, strict=True))

    def layer_op(self, op: str, in_dim: int, out_dim: int) -> str:
        """The op the searched ``op`` builds on a layer ``in_dim -> out_dim`` in this layout."""
        return op if self.layout == "selfnas" else nasiam_layer_op(op, in_dim, out_dim)

    def has_stem(self, in_dim: int) -> bool:
        return self.layout == "selfnas" and in_dim != self.width

    @property
    def size(self) -> int:
        return len(self.ops) ** self.layers

    def enumerate(self) -> Iterator[tuple[str, ...]]:
        return itertools.product(self.ops, repeat=self.layers)

    def spec(self, choices: tuple[str, ...] | list[str], in_dim: int) -> HeadSpec:
        """The discrete head for one op per layer."""
        if len(choices) != self.layers or any(c not in self.ops for c in choices):
            raise GenotypeError(f"choices must name {self.layers} ops of {self.ops}")
        stem = [HeadLayer(STEM_OP, self.width)] if self.has_stem(in_dim) else []
        dims = self.layer_dims(in_dim)
        chain = [HeadLayer(self.layer_op(op, a, b), b) for op, (a, b) in zip(choices, dims, strict=True)]
        final = [HeadLayer(self.final_op, self.out_dim)] if self.final_op else []
        return HeadSpec(tuple(stem + chain + final))


def head_spaces(
    search: SearchConfig, proj_out: int, backbone_dim: int, method: MethodRecord
) -> tuple[HeadSearchSpace, HeadSearchSpace | None]:
    """The projector space and, for a method with a predictor, the predictor space, as ``search``
    configures them for ``method`` (its record).

    ``selfnas`` layout: the projector at ``search.width`` or the backbone's width, ending in
    Linear + BN without affine; the predictor at ``search.pred_width`` or ``proj_out``, ending
    in Linear. ``nasiam`` layout: the method's ``nasiam_heads``, the hidden widths
    ``search.width`` / ``search.pred_width`` or NASiam's (the input's, or a quarter of it).
    """
    needs_predictor = method.needs_predictor
    if search.layout == "nasiam":
        return _nasiam_spaces(search, proj_out, backbone_dim, needs_predictor, method)
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


def _nasiam_spaces(
    search: SearchConfig, proj_out: int, backbone_dim: int, needs_predictor: bool, method: MethodRecord
) -> tuple[HeadSearchSpace, HeadSearchSpace | None]:
    proj, pred = method.nasiam_heads
    ops = tuple(search.ops)
    width = search.width or proj.hidden(backbone_dim)
    projector = HeadSearchSpace(proj.layers, width, proj_out, proj.final_op, ops, "nasiam")
    if pred is None or not needs_predictor:
        return projector, None
    pred_width = search.pred_width or pred.hidden(proj_out)
    return projector, HeadSearchSpace(pred.layers, pred_width, proj_out, pred.final_op, ops, "nasiam")


class SearchHead(nn.Module):
    """The supernet of a :class:`HeadSearchSpace`: N x in_dim -> N x out_dim.

    ``alpha`` (layers x ops) holds the architecture logits; they start at zero (uniform
    mixture) as in NASiam. Only parameters named ``alpha`` are architecture parameters.
    Each candidate is built exactly as :meth:`HeadSearchSpace.spec` names it, so a derived head
    rebuilds the modules its choices were trained as.
    """

    def __init__(self, space: HeadSearchSpace, in_dim: int) -> None:
        super().__init__()
        self.space = space
        self.in_dim = in_dim
        self.out_dim = space.out_dim
        self.stem = make_head_op(STEM_OP, in_dim, space.width) if space.has_stem(in_dim) else nn.Identity()
        self.mixed = nn.ModuleList(
            MixedOp({op: make_head_op(space.layer_op(op, a, b), a, b) for op in space.ops})
            for a, b in space.layer_dims(in_dim)
        )
        last = space.layer_dims(in_dim)[-1][1]
        self.final = make_head_op(space.final_op, last, space.out_dim) if space.final_op else nn.Identity()
        self.alpha = nn.Parameter(torch.zeros(space.layers, len(space.ops)))

    def weights(self) -> torch.Tensor:
        """softmax(alpha) per layer: layers x ops."""
        return torch.softmax(self.alpha, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weights()
        x = self.stem(x)  # N x width (selfnas layout)
        for layer, mixed in enumerate(self.mixed):
            x = mixed(x, w[layer])  # N x width (nasiam: the last without a final op, N x out_dim)
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
