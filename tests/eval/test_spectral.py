"""Spectral and retrieval scores: constructed spectra, hand-computed values, known extremes, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from selfnas.eval.scores import rankme
from selfnas.eval.spectral import alpha_req, alpha_req_distance, lidar, rankme_normalized, view_retrieval


def _orthonormal(n: int, d: int, gen: torch.Generator, centred: bool = False) -> torch.Tensor:
    """n x d float64 with orthonormal columns; with ``centred``, each column also sums to 0."""
    a = torch.randn(n, d + centred, generator=gen, dtype=torch.float64)
    if centred:
        a[:, 0] = 1.0
    q = torch.linalg.qr(a).Q
    return q[:, 1:] if centred else q


def _power_law(n: int, d: int, alpha: float, seed: int = 0) -> torch.Tensor:
    """n x d embeddings, columns already centred, whose covariance eigenvalues are k^-alpha / n."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.arange(1, d + 1, dtype=torch.float64)
    return _orthonormal(n, d, gen, centred=True) * k.pow(-alpha / 2) @ _orthonormal(d, d, gen).T


# ----------------------------------------------------------------------------- rankme_normalized


def test_rankme_normalized_of_isotropic_gaussian_is_close_to_one() -> None:
    z = torch.randn(4000, 16, generator=torch.Generator().manual_seed(0))
    assert 0.99 < rankme_normalized(z) <= 1.0
    assert rankme_normalized(torch.eye(16)) == 1.0  # rankme slightly above 16 (eps) is clipped


def test_rankme_normalized_of_rank_one_matrix_is_one_over_width() -> None:
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(64, 1, generator=gen), torch.randn(1, 10, generator=gen)
    assert rankme_normalized(u @ v) == pytest.approx(1 / 10, rel=1e-4)
    assert rankme_normalized((u @ v).T) == pytest.approx(1 / 10, rel=1e-4)  # min(N, D) either way
    assert rankme_normalized(torch.zeros(5, 3)) == pytest.approx(1 / 3)


def test_rankme_normalized_is_rankme_over_width() -> None:
    z = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert rankme_normalized(z, eps=0.0) == pytest.approx(rankme(z, eps=0.0) / 2, rel=1e-12)


# ----------------------------------------------------------------------------- alpha_req


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_constructed_power_law(alpha: float) -> None:
    z = _power_law(200, 64, alpha)
    assert alpha_req(z) == pytest.approx(alpha, abs=1e-9)
    assert alpha_req(3 * z + 7) == pytest.approx(alpha, abs=1e-9)  # scale and shift invariant
    assert alpha_req(z.float()) == pytest.approx(alpha, abs=1e-4)
    assert alpha_req_distance(z) == pytest.approx(abs(alpha - 1), abs=1e-9)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_of_gaussian_samples_with_power_law_covariance(alpha: float) -> None:
    gen = torch.Generator().manual_seed(1)
    scale = torch.arange(1, 33, dtype=torch.float64).pow(-alpha / 2)
    z = torch.randn(8000, 32, generator=gen, dtype=torch.float64) * scale @ _orthonormal(32, 32, gen).T
    assert alpha_req(z) == pytest.approx(alpha, abs=0.05)  # sample eigenvalues ~ within sqrt(D/N)


def test_alpha_req_leaves_out_numerically_zero_eigenvalues() -> None:
    # 64 columns but rank 20: the 44 zero eigenvalues (and N <= D after centring) are not fitted
    gen = torch.Generator().manual_seed(0)
    z = _power_law(100, 20, 1.5) @ _orthonormal(64, 20, gen).T
    assert alpha_req(z) == pytest.approx(1.5, abs=1e-9)
    wide = _power_law(30, 29, 1.5) @ _orthonormal(64, 29, gen).T  # N = 30 rows: rank N - 1 = 29
    assert alpha_req(wide) == pytest.approx(1.5, abs=1e-9)


def test_alpha_req_fits_only_the_stated_ranks() -> None:
    # lambda_k = k^-1 for k <= 16, then decaying as k^-3: a broken power law
    k = torch.arange(1, 49, dtype=torch.float64)
    lam = torch.where(k <= 16, 1 / k, 16.0**2 / k.pow(3))
    gen = torch.Generator().manual_seed(0)
    z = _orthonormal(200, 48, gen, centred=True) * lam.sqrt()
    assert alpha_req(z, k_max=16) == pytest.approx(1.0, abs=1e-9)
    assert alpha_req(z, k_min=16) == pytest.approx(3.0, abs=1e-9)
    assert 1.0 < alpha_req(z) < 3.0
    assert alpha_req(z, k_min=47, k_max=1000) == pytest.approx(3.0, abs=1e-9)  # k_max clipped to rank


def test_alpha_req_of_collapsed_representation_is_infinite() -> None:
    gen = torch.Generator().manual_seed(0)
    rank_one = torch.randn(50, 1, generator=gen) @ torch.randn(1, 8, generator=gen) + 1.0
    assert alpha_req(rank_one) == math.inf
    assert alpha_req(torch.ones(10, 4)) == math.inf
    assert alpha_req_distance(torch.ones(10, 4)) == math.inf
    assert alpha_req(_power_law(50, 8, 1.0), k_min=8) == math.inf  # one rank left in range


# ----------------------------------------------------------------------------- lidar


def _axis_views(a: float, b: float, s: float) -> torch.Tensor:
    """4 classes at +-a e1, +-b e2, each seen as 4 views at its mean +-s e1, +-s e2 (K=4, Q=4, D=2)."""
    e = torch.eye(2, dtype=torch.float64)
    means = torch.stack([a * e[0], -a * e[0], b * e[1], -b * e[1]])
    offsets = s * torch.cat([e, -e])
    return means[:, None, :] + offsets[None, :, :]


def test_lidar_hand_computed_anisotropic_classes() -> None:
    # Sigma_b = diag(a^2, b^2) / 2, Sigma_w = (s^2 / 2 + delta) I: LDA eigenvalues in ratio a^2 : b^2
    views = _axis_views(2.0, 1.0, 0.5)
    entropy = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert lidar(views, eps=0.0) == pytest.approx(math.exp(entropy), rel=1e-12)
    assert lidar(_axis_views(3.0, 3.0, 0.1), eps=0.0) == pytest.approx(2.0, rel=1e-12)


def test_lidar_is_full_for_isotropic_well_separated_classes() -> None:
    # 2D classes at +-5 e_i, views at +-0.1 e_j around them: isotropic LDA matrix, LiDAR = D
    d = 8
    e = torch.eye(d, dtype=torch.float64)
    views = torch.cat([5 * e, -5 * e])[:, None, :] + torch.cat([0.1 * e, -0.1 * e])[None, :, :]
    assert lidar(views) == pytest.approx(d, rel=1e-6)


def test_lidar_is_high_for_random_separated_classes_and_rotation_invariant() -> None:
    gen = torch.Generator().manual_seed(0)
    k, q, d = 64, 6, 8
    means = 10 * torch.randn(k, 1, d, generator=gen, dtype=torch.float64)
    views = means + 0.05 * torch.randn(k, q, d, generator=gen, dtype=torch.float64)
    value = lidar(views)
    assert value > 0.8 * d
    rotation = _orthonormal(d, d, gen)
    assert lidar(views @ rotation) == pytest.approx(value, rel=1e-9)
    assert lidar(views.float()) == pytest.approx(value, rel=1e-4)


def test_lidar_is_one_when_class_means_coincide() -> None:
    gen = torch.Generator().manual_seed(0)
    k, q, d = 32, 4, 6
    noise = torch.randn(k, q, d, generator=gen, dtype=torch.float64)
    views = 3.0 + noise - noise.mean(dim=1, keepdim=True)  # every class mean is 3.0 up to rounding
    assert lidar(views) == 1.0
    assert lidar(views.float()) == 1.0  # rounding at float32 precision is still no separation
    assert lidar(torch.full((k, q, d), 2.5)) == 1.0  # complete collapse
    assert lidar(torch.zeros(k, q, d)) == 1.0
    # class means on one line (rank-1 between-class scatter): ~1
    line = torch.randn(k, 1, 1, generator=gen, dtype=torch.float64) * torch.ones(1, 1, d)
    assert lidar(line + 0.1 * (noise - noise.mean(dim=1, keepdim=True))) == pytest.approx(1.0, abs=1e-4)


def test_lidar_prefers_separated_to_blurred_classes() -> None:
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(40, 1, 8, generator=gen, dtype=torch.float64)
    noise = torch.randn(40, 5, 8, generator=gen, dtype=torch.float64)
    # blur along 6 of 8 dims: only 2 directions keep the classes apart
    blur = torch.tensor([30.0] * 6 + [0.01] * 2, dtype=torch.float64)
    assert lidar(means + 0.01 * noise) > lidar(means + noise * blur) + 3


# ----------------------------------------------------------------------------- view_retrieval


def test_view_retrieval_of_identical_views_is_one() -> None:
    z = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    assert view_retrieval(z, z) == 1.0
    assert view_retrieval(z, 4 * z) == 1.0  # cosine ignores scale
    assert view_retrieval(z, z, chunk_size=7) == 1.0


def test_view_retrieval_of_independent_views_is_chance() -> None:
    gen = torch.Generator().manual_seed(0)
    n, trials = 20, 200
    values = [
        view_retrieval(torch.randn(n, 8, generator=gen), torch.randn(n, 8, generator=gen))
        for _ in range(trials)
    ]
    mean = sum(values) / trials
    assert mean == pytest.approx(1 / n, abs=4 * math.sqrt((1 / n) * (1 - 1 / n) / (n * trials)))


def test_view_retrieval_hand_case_with_tie() -> None:
    z1 = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    z2 = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    # row 0: z2[0] and z2[1] tie at cosine 1 -> index 0, a hit; row 1: same tie -> 0, a miss;
    # row 2: z2[2], a hit; row 3: (-1, 1) is nearest to (0, 1) (cosine 0.71), not (1, -1) (-1): a miss
    assert view_retrieval(z1, z2) == 0.5
    assert view_retrieval(z1, z2, chunk_size=1) == 0.5
    assert view_retrieval(z2, z1) == 0.5  # row 1 of z2 (2, 0) ties z1[0], z1[1] -> 0: a miss


def test_view_retrieval_tie_goes_to_the_lowest_index() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    # row 0: a hit; row 1: z2[1] and z2[2] tie at cosine 1 -> 1, a hit (the highest index would
    # miss); row 2: (0, -1) is nearest to (1, 0) (cosine 0 against -1, -1): a miss
    assert view_retrieval(z1, z2) == pytest.approx(2 / 3)


def test_view_retrieval_is_chunk_invariant() -> None:
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(100, 4, generator=gen)
    z2 = z1 + 0.8 * torch.randn(100, 4, generator=gen)
    value = view_retrieval(z1, z2)
    assert 0.0 < value < 1.0
    assert view_retrieval(z1, z2, chunk_size=3) == value
    assert view_retrieval(z1, z2, chunk_size=1000) == value


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "z, message",
    [
        (torch.randn(1, 4), "at least 2 rows"),
        (torch.randn(0, 4), "at least 2 rows"),
        (torch.randn(4), "N x D"),
        (torch.randn(3, 4, 2), "N x D"),
        (torch.randn(4, 0), "N x D"),
        (torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]), "NaN or infinite"),
        (torch.tensor([[1.0, 2.0], [float("inf"), 0.0]]), "NaN or infinite"),
    ],
)
def test_bad_embeddings_raise(z: torch.Tensor, message: str) -> None:
    for score in (rankme_normalized, alpha_req, alpha_req_distance):
        with pytest.raises(ValueError, match=message):
            score(z)
    with pytest.raises(ValueError, match=message):
        view_retrieval(z, z)


@pytest.mark.parametrize(
    "views, message",
    [
        (torch.randn(8, 4), "K x Q x D"),
        (torch.randn(2, 2, 2, 2), "K x Q x D"),
        (torch.randn(4, 3, 0), "K x Q x D"),
        (torch.randn(1, 5, 3), "K >= 2"),
        (torch.randn(5, 1, 3), "Q >= 2"),
        (torch.randn(0, 5, 3), "K >= 2"),
        (torch.tensor([[[0.0, 1.0], [float("nan"), 0.0]]] * 3), "NaN or infinite"),
    ],
)
def test_bad_views_raise(views: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lidar(views)


def test_bad_arguments_raise() -> None:
    z = torch.randn(6, 3)
    with pytest.raises(ValueError, match="same shape"):
        view_retrieval(z, z[:5])
    with pytest.raises(ValueError, match="chunk_size"):
        view_retrieval(z, z, chunk_size=0)
    for k_min, k_max in [(0, None), (2, 2), (3, 1)]:
        with pytest.raises(ValueError, match="k_min"):
            alpha_req(z, k_min=k_min, k_max=k_max)
    views = torch.randn(4, 3, 2)
    with pytest.raises(ValueError, match="delta"):
        lidar(views, delta=0.0)
    with pytest.raises(ValueError, match="eps"):
        lidar(views, eps=-1.0)


def test_scores_of_float32_tensors_that_require_grad_match_float64() -> None:
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(40, 5, generator=gen), torch.randn(40, 5, generator=gen)
    views = torch.randn(8, 3, 5, generator=gen)
    for fn, args in [
        (rankme_normalized, (z1,)),
        (alpha_req, (z1,)),
        (alpha_req_distance, (z1,)),
        (view_retrieval, (z1, z1 + 0.3 * z2)),
        (lidar, (views,)),
    ]:
        got = fn(*(a.clone().requires_grad_() for a in args))
        assert isinstance(got, float)
        assert got == pytest.approx(fn(*(a.double() for a in args)), rel=1e-5)
