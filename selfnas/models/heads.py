"""Projector and predictor heads, built from a *head spec*: a chain of named ops.

A head spec is plain data (a frozen dataclass whose ``repr`` and JSON say the same
thing), so a searched head (NASiam) and a hand-crafted one go through the same
builder and every SSL method accepts either.

A head search lays its searched layers out one of two ways (``search.layout``): ``selfnas``
(every method alike) or ``nasiam`` (as NASiam's code builds each method's heads: the method
record's ``nasiam_heads``). A found head spec names every op it builds, so it rebuilds the same
modules whatever its layout; the layout, kept in the genotype, lets a loader check the spec fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from selfnas.errors import GenotypeError
from selfnas.methods import METHOD_RECORDS, HeadRecipe, LayoutHead, MethodRecord
from selfnas.models.genotype_format import short
from selfnas.models.head_ops import HEAD_OPS, make_head_op

MAX_HEAD_DIM = 65536
MAX_HEAD_LAYERS = 64


@dataclass(frozen=True)
class HeadLayer:
    """One op of a head: ``op`` from :data:`HEAD_OPS`, producing ``dim`` features."""

    op: str
    dim: int


@dataclass(frozen=True)
class HeadSpec:
    """A head as a chain of layers, e.g. SimSiam's projector::

    HeadSpec(layers=(HeadLayer('linear_bn_relu', 512), HeadLayer('linear_bn_noaffine', 128)))
    """

    layers: tuple[HeadLayer, ...]

    @property
    def out_dim(self) -> int:
        return self.layers[-1].dim

    def to_json(self) -> dict[str, Any]:
        return {"layers": [{"op": layer.op, "dim": layer.dim} for layer in self.layers]}

    @classmethod
    def from_json(cls, data: Any) -> HeadSpec:
        """Validate untrusted JSON data; anything unexpected is a :class:`GenotypeError`."""
        if not isinstance(data, dict) or set(data) != {"layers"}:
            raise GenotypeError("a head spec must be an object with exactly one key 'layers'")
        layers = data["layers"]
        if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_HEAD_LAYERS:
            raise GenotypeError(f"'layers' must be a list of 1 to {MAX_HEAD_LAYERS} layers")
        parsed = []
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict) or set(layer) != {"op", "dim"}:
                raise GenotypeError(f"head layer {i} must be an object with exactly the keys 'op' and 'dim'")
            op, dim = layer["op"], layer["dim"]
            if not isinstance(op, str) or op not in HEAD_OPS:
                raise GenotypeError(
                    f"head layer {i}: unknown op {str(op)[:40]!r}; known: {', '.join(HEAD_OPS)}"
                )
            if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_HEAD_DIM:
                raise GenotypeError(f"head layer {i}: 'dim' must be an integer in 1..{MAX_HEAD_DIM}")
            parsed.append(HeadLayer(op, dim))
        return cls(tuple(parsed))


def build_head(spec: HeadSpec, in_dim: int) -> nn.Sequential:
    """Instantiate ``spec`` on inputs of width ``in_dim``: N x in_dim -> N x spec.out_dim."""
    modules = []
    dim = in_dim
    for layer in spec.layers:
        modules.append(make_head_op(layer.op, dim, layer.dim))
        dim = layer.dim
    return nn.Sequential(*modules)


def mlp_spec(hidden: int, out: int, hidden_layers: int, hidden_op: str, out_op: str) -> HeadSpec:
    """``hidden_layers`` x (hidden_op -> hidden) then out_op -> out."""
    return HeadSpec(tuple([HeadLayer(hidden_op, hidden)] * hidden_layers + [HeadLayer(out_op, out)]))


def default_heads(
    record: MethodRecord, hidden: int, out: int, pred_hidden: int
) -> tuple[HeadSpec, HeadSpec | None]:
    """The hand-crafted projector and predictor of a method's paper (widths scaled by the caller),
    built from the head recipes of the method's ``record`` (:mod:`selfnas.methods`).

    The projector's hidden layers are ``hidden`` wide, the predictor's ``pred_hidden``; both end in
    ``out`` features. The predictor is ``None`` for methods without one (SimCLR, MoCo).
    """
    projector = _recipe_spec(record.projector, hidden, out)
    predictor = None if record.predictor is None else _recipe_spec(record.predictor, pred_hidden, out)
    return projector, predictor


def _recipe_spec(recipe: HeadRecipe, hidden: int, out: int) -> HeadSpec:
    return mlp_spec(hidden, out, recipe.hidden_layers, recipe.hidden_op, recipe.out_op)


#: the ways a head search lays out its searched layers (``search.layout``)
HEAD_LAYOUTS = ("selfnas", "nasiam")


#: NASiam's searched (projector, predictor) by the method name a genotype file records, from the
#: method records (``nasiam_heads``)
NASIAM_HEADS: dict[str, tuple[LayoutHead, LayoutHead | None]] = {
    name: record.nasiam_heads for name, record in METHOD_RECORDS.items()
}

#: our pools -> NASiam's (BatchNorm after the pool)
NASIAM_POOLS = {"max_pool_3": "max_pool_3_bn", "avg_pool_3": "avg_pool_3_bn"}


def nasiam_layer_op(op: str, in_dim: int, out_dim: int) -> str:
    """The op NASiam's op wrappers make of the searched ``op`` on a layer ``in_dim -> out_dim``.

    Pools become NASiam's (BatchNorm after; they take the width change themselves). Widening, any
    other op is a bare Linear; narrowing, identity is Linear-BN-ReLU and a Linear-BN-act op stays.
    """
    op = NASIAM_POOLS.get(op, op)
    if op in NASIAM_POOLS.values() or in_dim == out_dim:
        return op
    if in_dim < out_dim:
        return "linear"
    return "linear_bn_relu" if op == "identity" else op


def check_layout(layout: Any, method: str | None, projector: HeadSpec, predictor: HeadSpec | None) -> None:
    """Refuse, with one :class:`GenotypeError` line, heads that do not fit ``layout`` for ``method``:
    a ``nasiam`` head has NASiam's layer count and final op for the method, and no BN-less pool."""
    if not isinstance(layout, str) or layout not in HEAD_LAYOUTS:
        raise GenotypeError(f"unknown head layout {short(layout)}; known: {', '.join(HEAD_LAYOUTS)}")
    if layout == "selfnas":
        return
    if method not in NASIAM_HEADS:
        raise GenotypeError(
            f"a genotype with layout 'nasiam' needs its 'method' ({', '.join(NASIAM_HEADS)}), "
            f"got {short(method)}"
        )
    for name, spec, head in zip(
        ("projector", "predictor"), (projector, predictor), NASIAM_HEADS[method], strict=True
    ):
        if head is None or spec is None:
            if head is not spec:
                has = "has no" if head is None else "needs a"
                raise GenotypeError(
                    f"layout 'nasiam': {method} {has} searched {name}; fix the genotype's {name}"
                )
            continue
        ends = f" + final {head.final_op!r}" if head.final_op else ""
        if len(spec.layers) != head.total_layers or (head.final_op and spec.layers[-1].op != head.final_op):
            raise GenotypeError(
                f"layout 'nasiam': a {method} {name} is {head.layers} searched layers{ends}, this genotype's "
                f"has {len(spec.layers)} ending in {spec.layers[-1].op!r}; search with search.layout=nasiam, "
                "or drop 'layout' to build it as written"
            )
        for i, layer in enumerate(spec.layers):
            if layer.op in NASIAM_POOLS:
                raise GenotypeError(
                    f"layout 'nasiam': {name} layer {i} is {layer.op!r}, but NASiam's pools are followed by "
                    f"BatchNorm; use {NASIAM_POOLS[layer.op]!r}, or drop 'layout'"
                )
