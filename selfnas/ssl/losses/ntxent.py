"""NT-Xent (SimCLR) and InfoNCE with a queue of negatives (MoCo v2); both in float32, under bf16
autocast too (:func:`selfnas.device.in_float32`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfnas.device import in_float32


@in_float32
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalized-temperature cross entropy over 2N views.

    ``l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t)`` with cosine similarity s,
    averaged over all 2N anchors. z1, z2: N x D embeddings of the two views.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1).float()  # 2N x D
    logits = z @ z.t() / temperature  # 2N x 2N
    logits.fill_diagonal_(float("-inf"))  # a view is never its own negative
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


@in_float32
def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo's InfoNCE: the positive key against a queue of negatives.

    q, k: N x D (k from the momentum encoder, detached); queue: K x D, already normalized.
    ``l = -log exp(q.k / t) / (exp(q.k / t) + sum_j exp(q.queue_j / t))``.
    """
    q = F.normalize(q, dim=1).float()
    k = F.normalize(k.detach(), dim=1).float()
    positive = (q * k).sum(dim=1, keepdim=True)  # N x 1
    negatives = q @ queue.t().float()  # N x K
    logits = torch.cat([positive, negatives], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
