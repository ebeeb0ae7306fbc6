"""kNN monitor: hand-computed votes, tie-breaking, chunking, and accuracy sanity checks."""

from __future__ import annotations

import math

import pytest
import torch

from selfnas.errors import DatasetError
from selfnas.eval.knn import effective_k, knn_accuracy, knn_predict

TOY_FEATS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
TOY_LABELS = torch.tensor([0, 1, 1, 2])


def test_hand_computed_votes_k2() -> None:
    # query (2, 1): cosine 2/sqrt(5) with (1, 0), 1/sqrt(5) with (0, 1), -2/sqrt(5) with (-1, 0),
    # 3/sqrt(10) with (1, 1). The two nearest are (1, 1) [class 2] and (1, 0) [class 0].
    temperature = 0.5
    scores = knn_predict(TOY_FEATS, TOY_LABELS, torch.tensor([[2.0, 1.0]]), 4, k=2, temperature=temperature)
    expected = torch.tensor(
        [[math.exp(2 / math.sqrt(5) / temperature), 0.0, math.exp(3 / math.sqrt(10) / temperature), 0.0]]
    )
    torch.testing.assert_close(scores, expected)


def test_k_larger_than_n_uses_all_neighbours() -> None:
    query = torch.tensor([[2.0, 1.0], [-1.0, 0.5]])
    clipped = knn_predict(TOY_FEATS, TOY_LABELS, query, 3, k=500)
    torch.testing.assert_close(clipped, knn_predict(TOY_FEATS, TOY_LABELS, query, 3, k=4))
    assert clipped.shape == (2, 3)


@pytest.mark.parametrize(
    ("k", "n_bank", "used"), [(200, 1000, 200), (200, 200, 200), (200, 60, 60), (1, 5, 1)]
)
def test_effective_k_is_k_clipped_to_the_bank(k: int, n_bank: int, used: int) -> None:
    assert effective_k(k, n_bank) == used


def test_k_within_the_bank_is_used_as_given() -> None:
    """k <= N keeps its number: only the nearest k vote (the farthest point, class 1, adds nothing)."""
    query = torch.tensor([[2.0, 1.0]])
    three = knn_predict(TOY_FEATS, TOY_LABELS, query, 3, k=3)
    assert three[0, 1] > 0 and three[0, 1] < knn_predict(TOY_FEATS, TOY_LABELS, query, 3, k=4)[0, 1]


@pytest.mark.parametrize("labels, winner", [((1, 0, 0), 1), ((0, 1, 1), 0)])
def test_ties_at_kth_neighbour_go_to_lower_training_index(labels: tuple[int, ...], winner: int) -> None:
    feats = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # rows 0 and 1 are equally similar
    scores = knn_predict(feats, torch.tensor(labels), torch.tensor([[1.0, 0.0]]), 2, k=1)
    assert scores.argmax(dim=1).item() == winner
    assert scores[0, 1 - winner].item() == 0.0


def test_many_exact_ties_are_resolved_and_chunk_independent() -> None:
    gen = torch.Generator().manual_seed(1)
    feats = torch.randint(0, 2, (300, 3), generator=gen).float() + 0.5  # only 8 distinct directions
    labels = torch.randint(0, 5, (300,), generator=gen)
    query = torch.randint(0, 2, (40, 3), generator=gen).float() + 0.5
    full = knn_predict(feats, labels, query, 5, k=17, chunk_size=1000)
    torch.testing.assert_close(full, knn_predict(feats, labels, query, 5, k=17, chunk_size=3))
    assert torch.all(full.count_nonzero(dim=1) >= 1)


def test_chunking_matches_single_chunk() -> None:
    # BLAS may pick a different kernel per chunk shape, so similarities agree to float rounding only.
    gen = torch.Generator().manual_seed(0)
    train, query = torch.randn(500, 16, generator=gen), torch.randn(123, 16, generator=gen)
    labels = torch.randint(0, 7, (500,), generator=gen)
    whole = knn_predict(train, labels, query, 7, k=20, chunk_size=10_000)
    for chunk_size in (1, 7, 64):
        chunked = knn_predict(train, labels, query, 7, k=20, chunk_size=chunk_size)
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=0.0)
        assert torch.equal(chunked.argmax(dim=1), whole.argmax(dim=1))


def _clusters(per_class: int, num_classes: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.eye(num_classes, 16)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return centres[labels] + noise * torch.randn(len(labels), 16, generator=gen), labels


def test_separable_clusters_are_perfect() -> None:
    train, train_labels = _clusters(50, 5, 0.05, seed=0)
    test, test_labels = _clusters(20, 5, 0.05, seed=1)
    assert knn_accuracy(train, train_labels, test, test_labels, 5, k=10) == 1.0


def test_random_labels_give_chance_accuracy() -> None:
    gen = torch.Generator().manual_seed(0)
    train, test = torch.randn(2000, 32, generator=gen), torch.randn(2000, 32, generator=gen)
    train_labels, test_labels = (
        torch.randint(0, 10, (2000,), generator=gen),
        torch.randint(0, 10, (2000,), generator=gen),
    )
    accuracy = knn_accuracy(train, train_labels, test, test_labels, 10, k=20)
    assert abs(accuracy - 0.1) < 0.04


def test_missing_labels_raise_dataset_error() -> None:
    with pytest.raises(DatasetError, match="needs labels"):
        knn_predict(TOY_FEATS, None, TOY_FEATS, 3)
    with pytest.raises(DatasetError, match="needs labels"):
        knn_accuracy(TOY_FEATS, TOY_LABELS, TOY_FEATS, None, 3)


def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="lie in"):
        knn_predict(TOY_FEATS, TOY_LABELS, TOY_FEATS, 2)
    with pytest.raises(ValueError, match="N x D"):
        knn_predict(TOY_FEATS, TOY_LABELS, torch.ones(2, 3), 3)
    with pytest.raises(ValueError, match="k >= 1"):
        knn_predict(TOY_FEATS, TOY_LABELS, TOY_FEATS, 3, k=0)
