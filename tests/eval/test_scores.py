"""Label-free representation scores: hand-computed values, known extremes and input checks."""

from __future__ import annotations

import math

import pytest
import torch

from selfnas.eval.scores import alignment, normalized_std, rankme, ssl_scores, uniformity


def test_rankme_of_full_rank_identity_is_its_dimension() -> None:
    assert rankme(torch.eye(16)) == pytest.approx(16, rel=1e-4)
    assert rankme(3 * torch.eye(32, 8)) == pytest.approx(8, rel=1e-4)  # min(N, D) = 8


def test_rankme_of_rank_one_matrix_is_one() -> None:
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(64, 1, generator=gen), torch.randn(1, 10, generator=gen)
    assert rankme(u @ v) == pytest.approx(1.0, abs=1e-4)
    assert rankme(torch.zeros(5, 3)) == 1.0


def test_rankme_hand_computed_two_singular_values() -> None:
    # singular values 3 and 1: p = (3/4, 1/4), entropy = -(3/4) log(3/4) - (1/4) log(1/4)
    z = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert rankme(z, eps=0.0) == pytest.approx(math.exp(entropy), rel=1e-12)


def test_rankme_of_random_gaussian_is_between_one_and_full_rank() -> None:
    value = rankme(torch.randn(200, 20, generator=torch.Generator().manual_seed(0)))
    assert 15 < value <= 20


def test_alignment_identical_and_antipodal_views() -> None:
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    assert alignment(z, 5 * z) == pytest.approx(0.0, abs=1e-12)  # scale is removed by normalisation
    assert alignment(z, -z) == pytest.approx(4.0)
    assert alignment(z, -z, alpha=1) == pytest.approx(2.0)


def test_alignment_hand_computed_orthogonal_views() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # first pair orthogonal (distance sqrt 2), second equal
    assert alignment(z1, z2) == pytest.approx(1.0)


def test_uniformity_of_collapsed_set_is_zero() -> None:
    assert uniformity(torch.ones(50, 8)) == pytest.approx(0.0, abs=1e-12)


def test_uniformity_hand_computed_three_points() -> None:
    # squared distances between (1, 0), (0, 1), (-1, 0): 2, 4, 2
    z = torch.tensor([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])
    expected = math.log((2 * math.exp(-2 * 2) + math.exp(-2 * 4)) / 3)
    assert uniformity(z) == pytest.approx(expected, rel=1e-12)
    assert uniformity(z, t=1) == pytest.approx(math.log((2 * math.exp(-2) + math.exp(-4)) / 3), rel=1e-12)


def test_uniformity_of_spread_points_is_strongly_negative() -> None:
    value = uniformity(torch.randn(500, 64, generator=torch.Generator().manual_seed(0)))
    assert -4.0 < value < -3.5  # ~ -2t for random directions in high dimension, t = 2


def test_uniformity_uses_only_the_first_rows_when_pairs_are_capped() -> None:
    z = torch.randn(100, 6, generator=torch.Generator().manual_seed(0))
    assert uniformity(z, max_pairs=45) == pytest.approx(uniformity(z[:10]))  # 10 * 9 / 2 = 45
    assert uniformity(z, max_pairs=54) == pytest.approx(uniformity(z[:10]))  # 11 rows would be 55
    assert uniformity(z, max_pairs=1) == pytest.approx(uniformity(z[:2]))


def test_normalized_std_extremes_and_hand_value() -> None:
    assert normalized_std(torch.ones(20, 4)) == pytest.approx(0.0, abs=1e-12)
    # rows (1, 0) and (-1, 0): dim 0 has population std 1, dim 1 has 0
    assert normalized_std(torch.tensor([[2.0, 0.0], [-1.0, 0.0]])) == pytest.approx(0.5)
    dim = 64
    healthy = normalized_std(torch.randn(2000, dim, generator=torch.Generator().manual_seed(0)))
    assert healthy == pytest.approx(1 / math.sqrt(dim), rel=0.05)


def test_ssl_scores_returns_every_score() -> None:
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(64, 8, generator=gen)
    z2 = z1 + 0.1 * torch.randn(64, 8, generator=gen)
    scores = ssl_scores(z1, z2)
    assert scores == {
        "rankme": rankme(z1),
        "alignment": alignment(z1, z2),
        "uniformity": uniformity(z1),
        "normalized_std": normalized_std(z1),
    }
    assert all(isinstance(value, float) for value in scores.values())


def test_scores_of_float32_tensors_that_require_grad_match_float64() -> None:
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    scores = ssl_scores(z.clone().requires_grad_(), z.clone().requires_grad_())
    assert scores == pytest.approx(ssl_scores(z.double(), z.double()), rel=1e-6)


@pytest.mark.parametrize(
    "z, message",
    [
        (torch.randn(1, 4), "at least 2 rows"),
        (torch.randn(0, 4), "at least 2 rows"),
        (torch.randn(4), "N x D"),
        (torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]), "NaN or infinite"),
        (torch.tensor([[1.0, 2.0], [float("inf"), 0.0]]), "NaN or infinite"),
    ],
)
def test_bad_embeddings_raise(z: torch.Tensor, message: str) -> None:
    for score in (rankme, uniformity, normalized_std):
        with pytest.raises(ValueError, match=message):
            score(z)
    with pytest.raises(ValueError, match=message):
        alignment(z, z)
    with pytest.raises(ValueError, match=message):
        ssl_scores(z, z)


def test_bad_arguments_raise() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        alignment(z, z[:3])
    with pytest.raises(ValueError, match="same shape"):
        ssl_scores(z, z[:, :2])
    with pytest.raises(ValueError, match="alpha"):
        alignment(z, z, alpha=0)
    with pytest.raises(ValueError, match="t > 0"):
        uniformity(z, t=-1)
    with pytest.raises(ValueError, match="max_pairs"):
        uniformity(z, max_pairs=0)
