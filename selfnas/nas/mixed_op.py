"""DARTS's mixed op: a softmax(alpha)-weighted sum of candidate ops.

One class for every search space: the head chain (NASiam) and the cell edges (DARTS /
CSNAS) both hold a list of candidates built from their op table and call
``forward(x, weights)`` with the already-softmaxed weights of that op.
"""

from __future__ import annotations

import torch
from torch import nn


class MixedOp(nn.Module):
    """``y = sum_i w_i * op_i(x)`` over named candidates (all with the same output shape)."""

    def __init__(self, candidates: dict[str, nn.Module]) -> None:
        super().__init__()
        if not candidates:
            raise ValueError("a mixed op needs at least one candidate")
        self.names = tuple(candidates)
        self.ops = nn.ModuleList(candidates.values())

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: any shape the ops accept; weights: K, non-negative, summing to 1."""
        out = weights[0] * self.ops[0](x)
        for w, op in zip(weights[1:], self.ops[1:], strict=True):
            out = out + w * op(x)
        return out
