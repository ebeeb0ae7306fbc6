"""Negative cosine similarity (SimSiam, BYOL)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfnas.device import in_float32


@in_float32
def negative_cosine_similarity(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``D(p, z) = - mean_n <p_n / ||p_n||, z_n / ||z_n||>`` with ``z`` detached (stop-gradient).

    p, z: N x D. Returns a scalar in [-1, 1]. SimSiam's loss is
    ``D(p1, z2) / 2 + D(p2, z1) / 2``; BYOL's ``2 - 2 cos`` equals ``2 + 2 D``. Computed in float32
    under bf16 autocast too (:func:`~selfnas.device.in_float32`).
    """
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()
