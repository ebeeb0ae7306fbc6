"""Representation-collapse monitor (SimSiam's diagnostic); the std itself is
:func:`selfnas.eval.scores.normalized_std`."""

from __future__ import annotations

import math

#: below this fraction of the healthy 1/sqrt(d), the representation counts as collapsed
COLLAPSE_RATIO = 0.2


def collapse_ratio(std: float, dim: int) -> float:
    """``std`` relative to the healthy 1/sqrt(dim)."""
    return std * math.sqrt(dim)
