"""Linear probe: correctness of the logistic regression, CV selection, determinism, errors."""

from __future__ import annotations

import warnings

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from selfnas.errors import DatasetError
from selfnas.eval.linear import linear_probe, predict, standardize, train_logreg

SMALL_GRID = (0.0, 1e-3, 1e-1)


pytestmark = pytest.mark.usefixtures("single_thread")


def _blobs(
    n: int, dim: int, num_classes: int, separation: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centres = separation * torch.eye(num_classes, dim)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    return centres[labels] + torch.randn(n, dim, generator=gen), labels


def test_standardize_uses_fit_statistics_only() -> None:
    fit = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    fit_z, other_z = standardize(fit, torch.tensor([[5.0, 7.0]]))
    torch.testing.assert_close(fit_z, torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    torch.testing.assert_close(other_z, torch.tensor([[3.0, 2.0]]))  # constant column: centred only


def test_train_logreg_matches_sklearn() -> None:
    feats, labels = _blobs(300, 5, 3, 1.5, seed=0)
    weight_decay = 1e-2
    weight, bias = train_logreg(feats, labels, 3, weight_decay, max_iter=200)
    # sklearn minimizes 0.5 ||W||^2 + C * sum CE, i.e. ours scaled by N with C = 1 / (N * wd).
    reference = LogisticRegression(C=1 / (len(labels) * weight_decay), tol=1e-10, max_iter=1000).fit(
        feats, labels
    )
    ours = torch.softmax(feats @ weight + bias, dim=1)
    theirs = torch.from_numpy(reference.predict_proba(feats.numpy())).float()
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0.0)
    assert weight.shape == (5, 3) and bias.shape == (3,)
    assert torch.equal(predict(weight, bias, feats), ours.argmax(dim=1))


def _objective(feats, labels, weight_decay, fit) -> float:
    """The objective train_logreg minimises, in float64."""
    weight, bias = fit[0].double(), fit[1].double()
    log_probs = (feats.double() @ weight + bias).log_softmax(dim=1)
    return (-log_probs.gather(1, labels[:, None]).mean() + 0.5 * weight_decay * weight.square().sum()).item()


def test_warm_start_reaches_the_same_optimum() -> None:
    feats, labels = _blobs(300, 5, 3, 1.5, seed=0)
    start = train_logreg(feats, labels, 3, 1.0)  # the optimum of a much stronger weight decay
    cold = train_logreg(feats, labels, 3, 1e-3, max_iter=200)
    warm = train_logreg(feats, labels, 3, 1e-3, max_iter=200, init=start)
    # Both stop where float32 no longer sees the loss change; near this flat optimum that leaves the
    # probabilities ~3e-4 apart on some CPUs (kernels that sum in another order), so the objective is
    # the tight check (the two agree to ~3e-8 relative). Stopping at the warm start would miss by 0.27.
    optimum = _objective(feats, labels, 1e-3, cold)
    assert _objective(feats, labels, 1e-3, start) - optimum > 1e-2
    assert _objective(feats, labels, 1e-3, warm) == pytest.approx(optimum, rel=1e-6)
    torch.testing.assert_close(
        torch.softmax(feats @ warm[0] + warm[1], dim=1),
        torch.softmax(feats @ cold[0] + cold[1], dim=1),
        atol=1e-3,
        rtol=0.0,
    )


def test_separable_blobs_probe_well() -> None:
    train, train_labels = _blobs(600, 20, 10, 6.0, seed=0)
    test, test_labels = _blobs(400, 20, 10, 6.0, seed=1)
    result = linear_probe(train, train_labels, test, test_labels, 10, folds=3, max_iter=20)
    assert result.accuracy > 0.95


def test_noise_probes_at_chance() -> None:
    train, train_labels = _blobs(400, 10, 4, 0.0, seed=0)
    test, test_labels = _blobs(2000, 10, 4, 0.0, seed=1)
    result = linear_probe(train, train_labels, test, test_labels, 4, weight_decays=SMALL_GRID, max_iter=15)
    assert abs(result.accuracy - 0.25) < 0.05


def test_cv_scores_cover_the_grid_and_pick_its_best() -> None:
    gen = torch.Generator().manual_seed(0)
    train, test = torch.randn(40, 200, generator=gen), torch.randn(100, 200, generator=gen)
    train_labels, test_labels = (
        torch.randint(0, 2, (40,), generator=gen),
        torch.randint(0, 2, (100,), generator=gen),
    )
    grid = (0.0, 1e-2, 1.0, 10.0)
    result = linear_probe(train, train_labels, test, test_labels, 2, weight_decays=grid, folds=4, max_iter=10)
    assert set(result.cv_scores) == set(grid)
    assert result.weight_decay in grid
    assert result.cv_scores[result.weight_decay] == max(result.cv_scores.values())
    assert all(0.0 <= score <= 1.0 for score in result.cv_scores.values())


def test_cv_ties_go_to_the_larger_weight_decay() -> None:
    train, train_labels = _blobs(100, 4, 2, 20.0, seed=0)  # every decay classifies perfectly
    test, test_labels = _blobs(50, 4, 2, 20.0, seed=1)
    result = linear_probe(train, train_labels, test, test_labels, 2, weight_decays=SMALL_GRID, max_iter=10)
    assert set(result.cv_scores.values()) == {1.0}
    assert result.weight_decay == max(SMALL_GRID)


def test_deterministic_under_seed() -> None:
    train, train_labels = _blobs(200, 8, 3, 1.0, seed=0)
    test, test_labels = _blobs(100, 8, 3, 1.0, seed=1)
    runs = [
        linear_probe(train, train_labels, test, test_labels, 3, weight_decays=SMALL_GRID, seed=7, max_iter=10)
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_rare_class_falls_back_to_plain_kfold() -> None:
    train, train_labels = _blobs(60, 4, 3, 3.0, seed=0)
    train_labels[:2] = 3  # class 3 has 2 members < 5 folds
    test, test_labels = _blobs(30, 4, 3, 3.0, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = linear_probe(
            train, train_labels, test, test_labels, 4, weight_decays=SMALL_GRID, max_iter=10
        )
    assert 0.0 <= result.accuracy <= 1.0


def test_inference_mode_features_are_accepted() -> None:
    with torch.inference_mode():
        train, train_labels = _blobs(100, 4, 2, 4.0, seed=0)
        test, test_labels = _blobs(50, 4, 2, 4.0, seed=1)
    result = linear_probe(train, train_labels, test, test_labels, 2, weight_decays=(1e-3,), max_iter=10)
    with torch.inference_mode():
        same = linear_probe(train, train_labels, test, test_labels, 2, weight_decays=(1e-3,), max_iter=10)
    assert result == same and result.accuracy > 0.9


def test_missing_labels_or_single_class_raise_dataset_error() -> None:
    feats, labels = _blobs(20, 3, 2, 1.0, seed=0)
    with pytest.raises(DatasetError, match="needs labels"):
        linear_probe(feats, None, feats, labels, 2)
    with pytest.raises(DatasetError, match="needs labels"):
        linear_probe(feats, labels, feats, None, 2)
    with pytest.raises(DatasetError, match="at least 2 classes"):
        linear_probe(feats, torch.zeros(20, dtype=torch.long), feats, labels, 2)


def test_bad_arguments_raise_value_error() -> None:
    feats, labels = _blobs(20, 3, 2, 1.0, seed=0)
    with pytest.raises(ValueError, match="distinct"):
        linear_probe(feats, labels, feats, labels, 2, weight_decays=(1e-3, 1e-3))
    with pytest.raises(ValueError, match="lie in"):
        linear_probe(feats, labels, feats, labels, 1)
    with pytest.raises(ValueError, match="feature dims differ"):
        linear_probe(feats, labels, feats[:, :2], labels, 2)
