"""Projector and predictor heads, built from a *head spec*: a chain of named ops.

A head spec is plain data (a frozen dataclass whose ``repr`` and JSON say the same
thing), so a searched head (NASiam) and a hand-crafted one go through the same
builder and every SSL method accepts either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from selfnas.errors import GenotypeError
from selfnas.methods import METHOD_RECORDS, HeadRecipe
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


def default_heads(method: str, hidden: int, out: int, pred_hidden: int) -> tuple[HeadSpec, HeadSpec | None]:
    """The hand-crafted projector and predictor of each method's paper (widths scaled by the caller),
    built from the head recipes of the method's record in :mod:`selfnas.methods`.

    The projector's hidden layers are ``hidden`` wide, the predictor's ``pred_hidden``; both end in
    ``out`` features. The predictor is ``None`` for methods without one (SimCLR, MoCo).
    """
    if method not in METHOD_RECORDS:
        raise GenotypeError(f"no default heads for method {method!r}")
    record = METHOD_RECORDS[method]
    projector = _recipe_spec(record.projector, hidden, out)
    predictor = None if record.predictor is None else _recipe_spec(record.predictor, pred_hidden, out)
    return projector, predictor


def _recipe_spec(recipe: HeadRecipe, hidden: int, out: int) -> HeadSpec:
    return mlp_spec(hidden, out, recipe.hidden_layers, recipe.hidden_op, recipe.out_op)
