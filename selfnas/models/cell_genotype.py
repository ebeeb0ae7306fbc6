"""A found DARTS / CSNAS cell pair as validated data, with the strict genotype JSON header.

JSON form (see :mod:`selfnas.models.genotype_format` for the header)::

    {"format": "selfnas-genotype", "version": 1, "space": "cells", "nodes": 4,
     "normal": [["sep_conv_3x3", 0], ["skip_connect", 1], ...],   # 2 * nodes pairs
     "reduce": [["max_pool_3x3", 0], ["dil_conv_5x5", 2], ...]}

Pair ``2 * i`` and ``2 * i + 1`` feed intermediate node ``i``: ``(op, input)`` with input 0
and 1 the two cell inputs and ``2 + j`` intermediate node ``j < i``. The two inputs of a
node differ. Anything else (unknown or ``none`` op, code in a string, bools for ints, extra
keys, forward references, absurd sizes) is refused with one :class:`GenotypeError` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from selfnas.errors import GenotypeError
from selfnas.models.cell_ops import CELL_OPS
from selfnas.models.genotype_format import check_header, header, is_int, short

MAX_NODES = 8
Pairs = tuple[tuple[str, int], ...]


def _check_nodes(nodes: Any) -> None:
    if not is_int(nodes) or not 1 <= nodes <= MAX_NODES:
        raise GenotypeError(f"cell genotype 'nodes' must be an int in 1..{MAX_NODES}, got {short(nodes)}")


def _as_pairs(cell: str, pairs: Any, nodes: int) -> Pairs:
    """Validate one cell's ``(op, input)`` list and return it as a tuple of tuples."""
    if not isinstance(pairs, list | tuple) or len(pairs) != 2 * nodes:
        raise GenotypeError(f"cell genotype {cell!r} must be a list of {2 * nodes} [op, input] pairs")
    out: list[tuple[str, int]] = []
    for k, pair in enumerate(pairs):
        node = k // 2
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise GenotypeError(f"cell genotype {cell!r} entry {k} must be an [op, input] pair")
        op, src = pair
        if not isinstance(op, str) or op not in CELL_OPS or op == "none":
            known = ", ".join(n for n in CELL_OPS.names() if n != "none")
            raise GenotypeError(f"cell genotype {cell!r} entry {k}: op {short(op)} is not one of {known}")
        if not is_int(src) or not 0 <= src < 2 + node:
            raise GenotypeError(
                f"cell genotype {cell!r} entry {k}: node {node} reads input {short(src)}, "
                f"which must be an int in 0..{1 + node} (the cell inputs and earlier nodes)"
            )
        if k % 2 == 1 and src == out[-1][1]:
            raise GenotypeError(f"cell genotype {cell!r}: node {node} reads input {src} twice")
        out.append((op, src))
    return tuple(out)


@dataclass(frozen=True)
class CellGenotype:
    """The normal and the reduction cell: 2 ``(op, input)`` pairs per intermediate node.

    Lists are accepted and stored as tuples, so ``repr`` is a literal that can be pasted back.
    """

    normal: Pairs
    reduce: Pairs
    nodes: int = 4

    space = "cells"

    def __post_init__(self) -> None:
        _check_nodes(self.nodes)
        object.__setattr__(self, "normal", _as_pairs("normal", self.normal, self.nodes))
        object.__setattr__(self, "reduce", _as_pairs("reduce", self.reduce, self.nodes))

    def node_inputs(self, reduction: bool) -> tuple[Pairs, ...]:
        """Per intermediate node, its two ``(op, input)`` pairs in the chosen cell."""
        pairs = self.reduce if reduction else self.normal
        return tuple(pairs[2 * i : 2 * i + 2] for i in range(self.nodes))

    def to_json(self) -> dict[str, Any]:
        return {
            **header(self.space),
            "nodes": self.nodes,
            "normal": [list(pair) for pair in self.normal],
            "reduce": [list(pair) for pair in self.reduce],
        }

    @classmethod
    def from_json(cls, data: Any) -> CellGenotype:
        check_header(data, cls.space, {"format", "version", "space", "nodes", "normal", "reduce"})
        return cls(data["normal"], data["reduce"], data["nodes"])
