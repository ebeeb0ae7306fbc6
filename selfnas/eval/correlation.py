"""Rank correlations between label-free scores and labelled accuracies over the trials of a study."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real

import numpy as np
from scipy import stats  # a required dependency of scikit-learn


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rho: the Pearson correlation of the ranks of x and y (ties get their mean rank).

    x, y: finite values, both of length n. ``rho = 1 - 6 sum d_i^2 / (n (n^2 - 1))`` without ties.
    Returns a float in [-1, 1], or nan when n < 2 or either input is constant (no warning).
    """
    a, b = _checked(x, y)
    return math.nan if _degenerate(a, b) else float(stats.spearmanr(a, b).statistic)


def kendall(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b: ``(n_c - n_d) / sqrt((n_0 - n_x) (n_0 - n_y))``.

    n_c, n_d: concordant and discordant pairs; n_0 = n (n - 1) / 2; n_x, n_y: pairs tied in x, in y.
    x, y: finite values, both of length n. Returns a float in [-1, 1], or nan when n < 2 or either
    input is constant (no warning).
    """
    a, b = _checked(x, y)
    return math.nan if _degenerate(a, b) else float(stats.kendalltau(a, b).statistic)


def score_correlations(
    records: Sequence[Mapping[str, object]], scores: Sequence[str], targets: Sequence[str]
) -> dict[str, dict[str, float]]:
    """How each label-free score ranks the trials compared with each labelled target.

    records: one dict per trial, e.g. ``{"rankme": 31.2, "knn_acc": 0.71, ...}``. A value that is
    absent, None or NaN counts as missing; any other value must be a real number.
    Returns ``{f"{score}/{target}": {"spearman": rho, "kendall": tau, "n": n}}`` for every score and
    target key present in at least one record, where rho and tau are :func:`spearman` and
    :func:`kendall` over the n records that have both values (nan when n < 2 or either is constant).
    """
    result: dict[str, dict[str, float]] = {}
    for score in _present(records, scores):
        for target in _present(records, targets):
            pairs = [(_value(r, score), _value(r, target)) for r in records]
            xs = [s for s, t in pairs if s is not None and t is not None]
            ys = [t for s, t in pairs if s is not None and t is not None]
            result[f"{score}/{target}"] = {
                "spearman": spearman(xs, ys),
                "kendall": kendall(xs, ys),
                "n": len(xs),
            }
    return result


def _checked(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """x and y as 1-D float64 arrays, after checking they have equal length and are finite."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("x and y must be finite; drop trials with NaN or infinite values first")
    return a, b


def _degenerate(a: np.ndarray, b: np.ndarray) -> bool:
    """True when a rank correlation of a and b is undefined: fewer than 2 values, or a constant input."""
    return a.size < 2 or a.min() == a.max() or b.min() == b.max()


def _present(records: Sequence[Mapping[str, object]], keys: Sequence[str]) -> list[str]:
    """The keys that at least one record holds a non-missing value for, in the given order."""
    return [key for key in keys if any(_value(r, key) is not None for r in records)]


def _value(record: Mapping[str, object], key: str) -> float | None:
    """``record[key]`` as a float, or None when it is absent, None or NaN."""
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, Real):
        raise ValueError(f"record value for {key!r} must be a real number, got {value!r}")
    return None if math.isnan(value) else float(value)
