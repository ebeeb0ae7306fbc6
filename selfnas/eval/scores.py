"""Label-free scores of a representation, to rank candidate architectures without labels (CSNAS).

Every score takes embeddings as N x D float tensors (any device), computes in float64 without
gradients, and returns a Python float. Inputs need N >= 2 finite rows, else ``ValueError``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DEFAULT_MAX_PAIRS = 2_000_000  # ~ the first 2000 rows: 16 MB of float64 pairwise distances


def rankme(embeddings: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023), a smooth effective rank of ``embeddings`` (N x D).

    ``RankMe = exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / ||sigma||_1 + eps`` over the
    singular values ``sigma`` of the (uncentred) matrix. Lies in [1, min(N, D)] up to ``eps``:
    ~min(N, D) when all directions carry equal energy, ~1 for a rank-1 (collapsed) matrix.
    An all-zero matrix scores 1.0. Higher is better.
    """
    z = _checked(embeddings, "embeddings")
    sigma = torch.linalg.svdvals(z)
    total = sigma.sum()
    if total == 0:
        return 1.0
    p = sigma / total + eps
    return (-(p * p.log()).sum()).exp().item()


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> float:
    """Alignment (Wang & Isola 2020): ``mean_i ||f(x_i) - f(x_i+)||^alpha``, lower is better.

    z1, z2: N x D embeddings of two views; row i of each forms a positive pair. Rows are
    l2-normalised first, so the value lies in [0, 2^alpha]: 0 for identical views, 2^alpha for
    antipodal ones.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    a, b = _checked_pair(z1, z2)
    return (a - b).norm(dim=1).pow(alpha).mean().item()


def uniformity(z: torch.Tensor, t: float = 2.0, max_pairs: int = DEFAULT_MAX_PAIRS) -> float:
    """Uniformity (Wang & Isola 2020): ``log mean_{i<j} exp(-t ||f(x_i) - f(x_j)||^2)``, lower is better.

    z: N x D embeddings, l2-normalised first. 0 for a collapsed set (every row the same); by Jensen
    at least -2t N / (N - 1), and about -2t for points spread evenly over a high-dimensional sphere.
    Only the first n rows are used, n the largest with n (n - 1) / 2 <= ``max_pairs``, so memory
    stays bounded (the subsample is deterministic).
    """
    if t <= 0 or max_pairs < 1:
        raise ValueError(f"need t > 0 and max_pairs >= 1, got t={t}, max_pairs={max_pairs}")
    unit = F.normalize(_checked(z, "z"), dim=1)[: _rows_for_pairs(max_pairs)]
    sq_dist = torch.pdist(unit).square()
    return (torch.logsumexp(-t * sq_dist, dim=0) - math.log(sq_dist.numel())).item()


def normalized_std(z: torch.Tensor) -> float:
    """Mean over the D dims of the (population) std over N rows of l2-normalised ``z`` (N x D).

    Since the per-dim variances sum to ``1 - ||mean||^2``, the value lies in [0, 1/sqrt(D)]:
    ~1/sqrt(D) for a healthy, spread-out representation, 0 for a collapsed one (SimSiam monitor).
    """
    return F.normalize(_checked(z, "z"), dim=1).std(dim=0, correction=0).mean().item()


def ssl_scores(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, float]:
    """All label-free scores of two views z1, z2 (each N x D, row i a positive pair).

    Returns ``rankme`` (of z1, higher is better), ``alignment`` (lower is better), ``uniformity``
    (of z1, lower is better) and ``normalized_std`` (of z1, ~1/sqrt(D) is healthy).
    """
    _checked_pair(z1, z2)
    return {
        "rankme": rankme(z1),
        "alignment": alignment(z1, z2),
        "uniformity": uniformity(z1),
        "normalized_std": normalized_std(z1),
    }


def _checked(z: torch.Tensor, name: str) -> torch.Tensor:
    """``z`` as a detached float64 tensor, after checking it is N x D with N >= 2 and finite."""
    if z.ndim != 2 or z.shape[1] == 0:
        raise ValueError(f"{name} must be an N x D matrix with D >= 1, got shape {tuple(z.shape)}")
    if z.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows (embeddings) to score, got {z.shape[0]}")
    z = z.detach().to(torch.float64)
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or infinite values; the representation has diverged")
    return z


def _checked_pair(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both views checked by :func:`_checked`, of equal shape, l2-normalised row-wise."""
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    return F.normalize(_checked(z1, "z1"), dim=1), F.normalize(_checked(z2, "z2"), dim=1)


def _rows_for_pairs(max_pairs: int) -> int:
    """The largest n with n (n - 1) / 2 <= max_pairs (max_pairs >= 1, so n >= 2)."""
    n = math.isqrt(2 * max_pairs) + 1
    while n * (n - 1) // 2 > max_pairs:
        n -= 1
    return n
