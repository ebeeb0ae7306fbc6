"""Representation-collapse monitor (SimSiam's diagnostic)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: below this fraction of the healthy 1/sqrt(d), the representation counts as collapsed
COLLAPSE_RATIO = 0.2


def normalized_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of l2-normalised embeddings z (N x D).

    Healthy outputs spread over the sphere give about 1/sqrt(D); a collapsed
    representation (every input mapped to one point) gives 0.
    """
    z = F.normalize(z.float(), dim=1)
    return float(z.std(dim=0).mean())


def collapse_ratio(std: float, dim: int) -> float:
    """``std`` relative to the healthy 1/sqrt(dim)."""
    return std * math.sqrt(dim)
