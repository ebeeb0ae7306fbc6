"""Label-free spectral and retrieval scores of a representation, to rank candidates without labels.

Same conventions as :mod:`selfnas.eval.scores`: embeddings are float tensors (any device), every
score computes in float64 without gradients and returns a Python float, and inputs with too few
rows or non-finite values raise ``ValueError``. Where a score must tell a numerically-zero
eigenvalue or difference from a real one, it uses the precision of the *input* dtype (float32
embeddings carry ~1e-7 relative rounding even after the cast to float64).
"""

from __future__ import annotations

import math

import torch

from selfnas.eval.scores import _checked, _checked_pair, rankme

LIDAR_DELTA = 1e-4  # ridge on the within-class scatter (delta * I)
LIDAR_EPS = 1e-8  # added to every normalised eigenvalue before the entropy


def rankme_normalized(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al., ICML 2023) of ``z`` (N x D) divided by ``min(N, D)``.

    ``rankme(z) / min(N, D)`` (see :func:`selfnas.eval.scores.rankme`), so candidates with
    different feature widths compare. Lies in [1 / min(N, D), 1]: ~1 when all directions carry
    equal energy, 1 / min(N, D) for a rank-1 (collapsed) matrix. Values above 1, which ``eps``
    can cause (by ~``eps * m log m`` for m = min(N, D)), are clipped to 1. Higher is better.
    """
    width = min(_checked(z, "z").shape)
    return min(1.0, rankme(z, eps=eps) / width)


def alpha_req(z: torch.Tensor, k_min: int = 1, k_max: int | None = None) -> float:
    """α-ReQ (Agrawal et al., NeurIPS 2022): power-law decay exponent of the eigenspectrum of ``z``.

    The eigenvalues ``lambda_1 >= lambda_2 >= ...`` of the covariance of the column-centred
    embeddings (N x D) are fitted as ``lambda_k ~ c k^(-alpha)`` by least squares of
    ``log lambda_k`` on ``log k`` over the ranks ``k_min <= k <= min(k_max, r)``, where ``r`` is the
    numerical rank: eigenvalues whose singular value is at most ``sigma_1 * max(N, D) * eps``
    (eps of the input dtype, NumPy's ``matrix_rank`` rule) are left out, as is everything past
    rank ``min(N - 1, D)``, which centring zeroes. ``k_max=None`` means no upper limit.
    Scale- and shift-invariant. 0 for a flat (white) spectrum, larger for faster decay; ``inf``
    when fewer than two ranks are left to fit (rank <= 1: collapsed). The paper finds the best
    representations near alpha ~ 1; :func:`alpha_req_distance` gives a lower-is-better score.
    """
    if k_min < 1 or (k_max is not None and k_max < k_min + 1):
        raise ValueError(f"need 1 <= k_min < k_max to fit a slope, got k_min={k_min}, k_max={k_max}")
    x = _checked(z, "z")
    sigma = torch.linalg.svdvals(x - x.mean(dim=0))
    rank = int((sigma > sigma[0] * max(x.shape) * _input_eps(z)).sum())
    k_hi = rank if k_max is None else min(k_max, rank)
    if k_hi - k_min + 1 < 2:
        return math.inf
    log_k = torch.arange(k_min, k_hi + 1, dtype=torch.float64).log()
    log_lam = (sigma[k_min - 1 : k_hi].square() / x.shape[0]).log()
    dk = log_k - log_k.mean()
    return (-(dk * (log_lam - log_lam.mean())).sum() / dk.square().sum()).item()


def alpha_req_distance(z: torch.Tensor, k_min: int = 1, k_max: int | None = None) -> float:
    """``|alpha - 1|`` for the α-ReQ exponent of :func:`alpha_req` (Agrawal et al., NeurIPS 2022).

    The paper finds the best representations near alpha ~ 1 (neither white nor over-compressed),
    so a search can minimise this. In [0, inf]: 0 at alpha = 1, ``inf`` for a collapsed (rank <= 1)
    representation. Lower is better.
    """
    return abs(alpha_req(z, k_min=k_min, k_max=k_max) - 1.0)


def lidar(views: torch.Tensor, delta: float = LIDAR_DELTA, eps: float = LIDAR_EPS) -> float:
    """LiDAR (Thilak et al., ICLR 2024): effective rank of the LDA matrix of the surrogate SSL task.

    views: K x Q x D, the embeddings of Q augmentations of each of K images (the surrogate
    classes). With class means ``mu_k``, grand mean ``mu`` (mean of the ``mu_k``) and population
    (expectation) normalisation:
    ``Sigma_b = mean_k (mu_k - mu)(mu_k - mu)^T``,
    ``Sigma_w = mean_{k,q} (z_kq - mu_k)(z_kq - mu_k)^T + delta I``,
    ``Sigma_lidar = Sigma_w^(-1/2) Sigma_b Sigma_w^(-1/2)``, and with its eigenvalues ``lambda``,
    ``LiDAR = exp(-sum_i p_i log p_i)``, ``p_i = lambda_i / ||lambda||_1 + eps``, as in RankMe.
    Defaults: ``delta = 1e-4`` and ``eps = 1e-8``. Lies in [1, min(D, K - 1)] up to ``eps``:
    high when the class means spread over many directions that the views do not blur, 1 when the
    class means coincide (to within ``max(K, Q)`` rounding units of the input dtype, relative to
    ``max |views|``: there the normalised spectrum would be rounding noise). Invariant to a
    rotation of the embedding space. Higher is better.
    """
    if delta <= 0 or eps < 0:
        raise ValueError(f"need delta > 0 and eps >= 0, got delta={delta}, eps={eps}")
    if views.ndim != 3 or views.shape[2] == 0:
        raise ValueError(f"views must be K x Q x D with D >= 1, got shape {tuple(views.shape)}")
    k, q, d = views.shape
    if k < 2 or q < 2:
        raise ValueError(f"LiDAR needs K >= 2 images and Q >= 2 views of each, got K={k}, Q={q}")
    v = _checked(views.reshape(k * q, d), "views").reshape(k, q, d)
    means = v.mean(dim=1)
    between = means - means.mean(dim=0)
    if between.abs().max() <= max(k, q) * _input_eps(views) * v.abs().max():
        return 1.0
    within = (v - means[:, None]).reshape(k * q, d)
    sigma_b = between.T @ between / k
    sigma_w = within.T @ within / (k * q) + delta * torch.eye(d, dtype=torch.float64, device=v.device)
    w_vals, w_vecs = torch.linalg.eigh(sigma_w)
    inv_sqrt = (w_vecs * w_vals.rsqrt()) @ w_vecs.T
    lda = inv_sqrt @ sigma_b @ inv_sqrt
    lam = torch.linalg.eigvalsh((lda + lda.T) / 2).clamp(min=0)
    p = lam / lam.sum() + eps
    return (-(p * p.log()).sum()).exp().item()


def view_retrieval(z1: torch.Tensor, z2: torch.Tensor, chunk_size: int = 1024) -> float:
    """Label-free view-retrieval accuracy: how often a view finds its partner among all others.

    z1, z2: N x D embeddings of two views; row i of each forms a positive pair. The score is
    ``mean_i [argmax_j cos(z1_i, z2_j) == i]``, ties going to the lowest index j (so a tie with
    an earlier row counts as a miss). An all-zero row has cosine 0 with everything. In [0, 1]:
    1 when every view is closest to its own partner, ~1/N for unrelated views. Higher is better.
    Rows of z1 are processed ``chunk_size`` at a time (peak memory ~ chunk_size x N floats).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    a, b = _checked_pair(z1, z2)
    hits = sum(
        int((chunk @ b.T).argmax(dim=1).eq(torch.arange(start, start + len(chunk), device=b.device)).sum())
        for start, chunk in zip(range(0, len(a), chunk_size), a.split(chunk_size), strict=True)
    )
    return hits / len(a)


def _input_eps(z: torch.Tensor) -> float:
    """The rounding unit of ``z``'s dtype (float64's for non-float inputs)."""
    return torch.finfo(z.dtype if z.is_floating_point() else torch.float64).eps
