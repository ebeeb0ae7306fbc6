"""Features -> kNN -> linear probe: the one routine every evaluation of a frozen backbone runs.

The training monitor (kNN on val), a search trial's accuracies, a study's probe of a scenario
and ``selfnas evaluate`` all call :func:`probe_features`; they differ only in which splits they
pass and whether they want the linear probe. A caller that shows progress passes a
:class:`ProbeProgress`; this layer draws nothing itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from selfnas.data.types import ImageSet
from selfnas.device import Precision
from selfnas.errors import DatasetError
from selfnas.eval.features import extract_features
from selfnas.eval.knn import effective_k, knn_accuracy
from selfnas.eval.linear import DEFAULT_WEIGHT_DECAYS, linear_probe, predict, standardize, train_logreg


class ProbeProgress(Protocol):
    """Told how far :func:`probe_features` got: ``phase`` is ``"features train"``, ``"features
    NAME"``, ``"kNN NAME"`` (per held-out split) or ``"linear probe"``; ``done`` of ``total`` units
    (images embedded, queries voted on, probes fitted). Every phase is reported first with
    ``done == 0`` and last with ``done == total``; phases come one after another."""

    def __call__(self, phase: str, done: int, total: int) -> None: ...


#: images embedded between two progress reports (one batch of :func:`extract_features`)
FEATURE_CHUNK = 1024


def embed(
    backbone: nn.Module,
    images: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str,
    progress: ProbeProgress | None = None,
    phase: str = "features",
    precision: Precision = "fp32",
) -> torch.Tensor:
    """:func:`extract_features` of ``images`` (uint8, N x C x H x W) -> float32 N x D on the CPU,
    one batch at a time so that ``progress`` hears after each (the same batches, so the same numbers)."""
    if progress is None:
        return extract_features(backbone, images, normalize, device=device, precision=precision)
    n = len(images)
    progress(phase, 0, n)
    chunks = []
    for start in range(0, n, FEATURE_CHUNK):
        chunk = images[start : start + FEATURE_CHUNK]
        chunks.append(
            extract_features(
                backbone, chunk, normalize, batch_size=FEATURE_CHUNK, device=device, precision=precision
            )
        )
        progress(phase, start + len(chunk), n)
    return torch.cat(chunks) if chunks else extract_features(backbone, images, normalize, device=device)


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`probe_features` measured.

    knn: held-out split name -> kNN top-1 accuracy in [0, 1], in the order the splits were given.
    linear: split name -> linear-probe accuracy, the reported split first (see
        :func:`probe_features`), then every other held-out split; ``None`` when not asked for.
    weight_decay: the decay chosen by cross-validation on train; cv_scores: every grid decay ->
        its mean CV accuracy. Both ``None`` when no probe was fitted.
    n_train: the training images used (after ``train_limit``); feature_dim: D of the features.
    knn_k: the neighbours the kNN vote actually used, ``min(knn_k, n_train)``: a k clipped to a
        small bank depresses the accuracy, so it is reported with it (see :func:`effective_k`).
    finite: whether every feature was finite (when not, and ``nan_if_nonfinite`` was set, every
        accuracy is nan and nothing was fitted).
    """

    knn: dict[str, float]
    linear: dict[str, float] | None
    weight_decay: float | None
    cv_scores: dict[float, float] | None
    n_train: int
    feature_dim: int
    knn_k: int
    finite: bool = True


def linear_report_split(held_out: Mapping[str, ImageSet]) -> str:
    """The held-out split the cross-validated linear probe reports on: ``"test"`` when there is
    one, else the first held-out split."""
    if not held_out:
        raise DatasetError("probing needs at least one held-out split to report on")
    return "test" if "test" in held_out else next(iter(held_out))


def probe_features(
    backbone: nn.Module,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    train: ImageSet,
    held_out: Mapping[str, ImageSet],
    device: torch.device | str,
    *,
    train_limit: int | None = None,
    knn_k: int = 200,
    linear: bool = True,
    seed: int = 0,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    max_iter: int = 100,
    nan_if_nonfinite: bool = False,
    progress: ProbeProgress | None = None,
    precision: Precision = "fp32",
) -> ProbeResult:
    """kNN (and optionally a linear probe) of ``backbone``'s frozen features, fitted on ``train``
    and measured on every split of ``held_out``.

    normalize: uint8 batch -> the float batch the backbone expects (see :func:`extract_features`).
    train_limit: use only the first ``train_limit`` training images (the kNN bank / probe set).
    held_out: split name -> labelled images, e.g. ``{"val": ..., "test": ...}``.
    knn_k: neighbours of the weighted kNN vote, clipped to the training set's size; the k used is
        returned in ``ProbeResult.knn_k`` (see :func:`effective_k` for why it matters).
    linear: also fit the linear probe: its weight decay is chosen by 5-fold CV on train (folds
        shuffled with ``seed``) and its accuracy reported on :func:`linear_report_split`; every
        other held-out split gets a refit on all of train with that chosen decay.
    weight_decays, max_iter: the CV grid and the L-BFGS iterations of every fit (see
        :func:`linear_probe`; the defaults are its defaults).
    nan_if_nonfinite: when any feature is non-finite (a diverged candidate), return nan for every
        accuracy instead of fitting anything.
    progress: told after every batch of images embedded, every chunk of kNN queries and every
        linear probe fitted (see :class:`ProbeProgress`).
    precision: what the backbone computes the features in (:func:`extract_features`); the kNN
        vote and the probe always run in float32 on them.
    Features are extracted train first, then the held-out splits in order. Classes are
    ``train.num_classes``. Raises DatasetError for unlabeled splits or an empty ``held_out``.
    """
    report_on = linear_report_split(held_out)
    for name, split in {"train": train, **held_out}.items():
        if not split.labeled:
            raise DatasetError(f"kNN / linear probing needs labels, but the {name} split has none")
    if train_limit is not None:
        if train_limit < 1:
            raise ValueError(f"train_limit must be >= 1, got {train_limit}")
        train = train.subset(torch.arange(min(train_limit, len(train))))
    assert train.labels is not None  # checked above; narrows the type
    f_train = embed(backbone, train.images, normalize, device, progress, "features train", precision)  # N x D
    feats = {
        n: embed(backbone, s.images, normalize, device, progress, f"features {n}", precision)
        for n, s in held_out.items()
    }
    n_train, dim = len(train), int(f_train.shape[1])
    k = effective_k(knn_k, n_train)
    finite = bool(torch.isfinite(f_train).all()) and all(
        bool(torch.isfinite(f).all()) for f in feats.values()
    )
    if not finite and nan_if_nonfinite:
        nan_linear = {n: math.nan for n in [report_on, *(n for n in feats if n != report_on)]}
        return ProbeResult(
            {n: math.nan for n in feats}, nan_linear if linear else None, None, None, n_train, dim, k, False
        )
    classes = train.num_classes
    knn = {
        n: knn_accuracy(
            f_train, train.labels, f, held_out[n].labels, num_classes=classes, k=k,
            progress=None if progress is None else _phase(progress, f"kNN {n}"),
        )
        for n, f in feats.items()
    }  # fmt: skip
    if not linear:
        return ProbeResult(knn, None, None, None, n_train, dim, k, finite)
    folds = 5  # linear_probe's default
    fits = folds + len(feats)  # the CV folds and the refit, then a refit per other held-out split
    if progress is not None:
        progress("linear probe", 0, fits)
    probe = linear_probe(
        f_train,
        train.labels,
        feats[report_on],
        held_out[report_on].labels,
        num_classes=classes,
        weight_decays=weight_decays,
        folds=folds,
        seed=seed,
        max_iter=max_iter,
        progress=None if progress is None else (lambda done, _: progress("linear probe", done, fits)),
    )
    accuracy = {report_on: probe.accuracy}
    for name, f in feats.items():
        if name != report_on:
            x_train, x_eval = standardize(f_train, f)
            weight, bias = train_logreg(x_train, train.labels, classes, probe.weight_decay, max_iter)
            labels = held_out[name].labels
            assert labels is not None
            accuracy[name] = float((predict(weight, bias, x_eval) == labels.cpu()).float().mean())
            if progress is not None:
                progress("linear probe", folds + len(accuracy), fits)
    return ProbeResult(knn, accuracy, probe.weight_decay, probe.cv_scores, n_train, dim, k, finite)


def _phase(progress: ProbeProgress, phase: str) -> Callable[[int, int], None]:
    return lambda done, total: progress(phase, done, total)
