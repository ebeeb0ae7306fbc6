"""probe_features: the same numbers as the pieces it is built from, on small synthetic images."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from selfnas.data.types import ImageSet
from selfnas.errors import DatasetError
from selfnas.eval.features import extract_features
from selfnas.eval.knn import knn_accuracy
from selfnas.eval.linear import linear_probe, predict, standardize, train_logreg
from selfnas.eval.probes import linear_report_split, probe_features

GRID_CLASSES = 3
QUICK = {"weight_decays": (1e-4, 1e-2), "max_iter": 30}  # a short grid: full-grid probes take seconds


def images(n: int, seed: int) -> ImageSet:
    """Labelled 3 x 4 x 4 images whose brightness depends on the class, plus overlapping noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, GRID_CLASSES, (n,), generator=g)
    base = (labels * 25 + 90).float()[:, None, None, None].expand(n, 3, 4, 4)
    noise = torch.randint(-40, 40, (n, 3, 4, 4), generator=g).float()
    return ImageSet((base + noise).clamp(0, 255).to(torch.uint8), labels)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255 - 0.5


@pytest.fixture(scope="module")
def backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.Tanh())


TRAIN, VAL, TEST = images(60, 1), images(24, 2), images(20, 3)


def feats(backbone: nn.Module, split: ImageSet) -> torch.Tensor:
    return extract_features(backbone, split.images, normalize)


def test_knn_and_linear_match_the_pieces(backbone: nn.Module) -> None:
    result = probe_features(backbone, normalize, TRAIN, {"test": TEST}, "cpu", knn_k=7, seed=3, **QUICK)
    f_train, f_test = feats(backbone, TRAIN), feats(backbone, TEST)
    knn = knn_accuracy(f_train, TRAIN.labels, f_test, TEST.labels, GRID_CLASSES, k=7)
    probe = linear_probe(f_train, TRAIN.labels, f_test, TEST.labels, GRID_CLASSES, seed=3, **QUICK)
    assert result.knn == {"test": knn}
    assert result.linear == {"test": probe.accuracy}
    assert result.weight_decay == probe.weight_decay and result.cv_scores == probe.cv_scores
    assert (result.n_train, result.feature_dim, result.finite) == (60, 8, True)
    assert 0 < knn < 1 and 0 < probe.accuracy < 1  # not a trivially separable toy: numbers are informative


def test_the_probe_defaults_are_those_of_the_pieces() -> None:
    ours = inspect.signature(probe_features).parameters
    probe, logreg = inspect.signature(linear_probe).parameters, inspect.signature(train_logreg).parameters
    assert ours["weight_decays"].default == probe["weight_decays"].default
    assert ours["max_iter"].default == probe["max_iter"].default == logreg["max_iter"].default
    assert ours["seed"].default == probe["seed"].default and ours["knn_k"].default == 200


@pytest.mark.parametrize(
    ("knn_k", "train_limit", "used"), [(7, None, 7), (60, None, 60), (200, None, 60), (200, 25, 25)]
)
def test_the_k_actually_used_is_reported(
    backbone: nn.Module, knn_k: int, train_limit: int | None, used: int
) -> None:
    """A k beyond the bank is clipped to it, and the result says so; a k within it is kept."""
    result = probe_features(
        backbone, normalize, TRAIN, {"val": VAL}, "cpu", knn_k=knn_k, train_limit=train_limit, linear=False
    )
    assert result.knn_k == used
    bank = TRAIN if train_limit is None else TRAIN.subset(torch.arange(train_limit))
    f_train, f_val = feats(backbone, bank), feats(backbone, VAL)
    assert result.knn["val"] == knn_accuracy(f_train, bank.labels, f_val, VAL.labels, GRID_CLASSES, k=used)


def test_linear_false_fits_no_probe(backbone: nn.Module) -> None:
    result = probe_features(backbone, normalize, TRAIN, {"val": VAL, "test": TEST}, "cpu", linear=False)
    assert list(result.knn) == ["val", "test"]
    assert result.linear is None and result.weight_decay is None and result.cv_scores is None


def test_other_held_out_splits_get_a_refit_with_the_chosen_decay(backbone: nn.Module) -> None:
    result = probe_features(backbone, normalize, TRAIN, {"val": VAL, "test": TEST}, "cpu", seed=1, **QUICK)
    f_train, f_val, f_test = feats(backbone, TRAIN), feats(backbone, VAL), feats(backbone, TEST)
    probe = linear_probe(f_train, TRAIN.labels, f_test, TEST.labels, GRID_CLASSES, seed=1, **QUICK)
    x_train, x_val = standardize(f_train, f_val)
    weight, bias = train_logreg(x_train, TRAIN.labels, GRID_CLASSES, probe.weight_decay, max_iter=30)
    val_acc = float((predict(weight, bias, x_val) == VAL.labels).float().mean())
    assert result.linear is not None and list(result.linear) == ["test", "val"]  # the reported split first
    assert result.linear == {"test": probe.accuracy, "val": val_acc}
    assert result.weight_decay == probe.weight_decay
    knn_val = knn_accuracy(f_train, TRAIN.labels, f_val, VAL.labels, GRID_CLASSES)  # default k=200, clipped
    assert result.knn["val"] == knn_val


def test_the_report_split_is_test_else_the_first(backbone: nn.Module) -> None:
    assert linear_report_split({"val": VAL, "test": TEST}) == "test"
    assert linear_report_split({"val": VAL}) == "val"
    result = probe_features(backbone, normalize, TRAIN, {"val": VAL}, "cpu", **QUICK)
    f_train, f_val = feats(backbone, TRAIN), feats(backbone, VAL)
    probe = linear_probe(f_train, TRAIN.labels, f_val, VAL.labels, GRID_CLASSES, **QUICK)
    assert result.linear == {"val": probe.accuracy}


def test_train_limit_takes_the_first_images(backbone: nn.Module) -> None:
    limited = probe_features(backbone, normalize, TRAIN, {"val": VAL}, "cpu", train_limit=25, linear=False)
    first = probe_features(
        backbone, normalize, TRAIN.subset(torch.arange(25)), {"val": VAL}, "cpu", linear=False
    )
    assert limited == first and limited.n_train == 25
    assert (
        probe_features(
            backbone, normalize, TRAIN, {"val": VAL}, "cpu", train_limit=10**6, linear=False
        ).n_train
        == 60
    )
    with pytest.raises(ValueError, match="train_limit"):
        probe_features(backbone, normalize, TRAIN, {"val": VAL}, "cpu", train_limit=0)


def test_features_are_extracted_train_first_then_held_out_in_order(backbone: nn.Module) -> None:
    seen: list[int] = []
    handle = backbone.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
    try:
        probe_features(backbone, normalize, TRAIN, {"val": VAL, "test": TEST}, "cpu", linear=False)
    finally:
        handle.remove()
    assert seen == [60, 24, 20]


def test_unlabeled_or_missing_splits_are_refused(backbone: nn.Module) -> None:
    unlabeled_train, unlabeled_val = ImageSet(TRAIN.images), ImageSet(VAL.images)
    with pytest.raises(DatasetError, match="train split has none"):
        probe_features(backbone, normalize, unlabeled_train, {"val": VAL}, "cpu", linear=False)
    with pytest.raises(DatasetError, match="val split has none"):
        probe_features(backbone, normalize, TRAIN, {"val": unlabeled_val}, "cpu")
    with pytest.raises(DatasetError, match="held-out"):
        probe_features(backbone, normalize, TRAIN, {}, "cpu")


def test_non_finite_features_give_nan_when_asked() -> None:
    diverged = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
    with torch.no_grad():
        diverged[1].weight.fill_(math.inf)
    result = probe_features(
        diverged, normalize, TRAIN, {"val": VAL, "test": TEST}, "cpu", nan_if_nonfinite=True
    )
    assert not result.finite and result.weight_decay is None and result.cv_scores is None
    assert result.linear is not None and list(result.linear) == ["test", "val"]
    assert all(math.isnan(v) for v in [*result.knn.values(), *result.linear.values()])
    plain = probe_features(diverged, normalize, TRAIN, {"val": VAL}, "cpu", linear=False)
    assert not plain.finite and "val" in plain.knn  # without the flag the kNN still runs
