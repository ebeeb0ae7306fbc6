"""A space larger than its table: fresh architectures drawn from a Gaussian copula fitted to it.

A 40-row table is a small sample of its space. A strategy simulated on it (``simulate.py``) meets
the same 40 architectures in every repeat, so a setting that screens most of them always finds the
table's own favourite of the score, lucky or not; the real search draws fresh candidates. This
module fits the table's joint distribution of a score at several fidelities and the truth
(``linear_val``, ``linear_test``) and draws as many new architectures from it as a simulation asks.

The model: each column is mapped to normal scores by its ranks (the score with its ``DIRECTION``
applied, so higher is better); the correlation of those normal scores is the copula; a draw is a
multivariate normal vector, and the truth columns are mapped back through the table's empirical
quantiles (linear between order statistics), so drawn accuracies keep the table's range and
shape. What it assumes, stated where its figures are used: the dependence between fidelities and
the truth is Gaussian in ranks, and the score's noise from one training is independent of the
truth's seed noise (a find is judged on rows trained again).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from selfnas.errors import SelfnasError
from selfnas.eval.correlation import spearman
from selfnas.groundtruth.simulate import OBJECTIVE, REPORTED, SimTable
from selfnas.groundtruth.table_analysis import is_collapsed, score_value, target_value
from selfnas.nas.scoring import DIRECTION

TRUTH = (OBJECTIVE, REPORTED)


@dataclass(frozen=True)
class Copula:
    """The fitted model: ``fidelities`` of ``score``, then :data:`TRUTH`, one column each."""

    score: str
    fidelities: tuple[str, ...]
    corr: np.ndarray  # (F + 2, F + 2) correlation of the normal scores
    truth: tuple[np.ndarray, ...]  # the table's sorted linear_val and linear_test
    epochs: float

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.fidelities, *TRUTH)


def normal_scores(values: np.ndarray) -> np.ndarray:
    """Van der Waerden scores: rank r of n becomes the normal quantile of r / (n + 1), ties averaged."""
    return norm.ppf(rankdata(values) / (values.size + 1))


def nearest_correlation(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` with negative eigenvalues clipped and its diagonal set back to one."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    fixed = vectors @ np.diag(np.clip(values, 1e-6, None)) @ vectors.T
    d = np.sqrt(np.diag(fixed))
    return fixed / np.outer(d, d)


def cross_seed_attenuation(
    rows: Sequence[Mapping[str, Any]], score: str, fidelities: Sequence[str]
) -> dict[str, float]:
    """How much of the score's rank correlation with ``linear_val`` survives when the truth comes
    from another training: per fidelity, Spearman's rho of (score of seed s, truth of seed t != s)
    over (score of seed s, truth of seed s), over the architectures trained with several seeds,
    clipped to [0, 1]. One training's noise moves its score and its accuracy together; a find is
    judged on rows trained again, so only the cross-seed part of the correlation helps a search."""
    by_arch: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if not is_collapsed(row) and row.get("genotype") is not None:
            by_arch[row["arch"]].append(row)
    groups = [g for g in by_arch.values() if len({r.get("seed") for r in g}) >= 2]
    if len(groups) < 3:
        raise SelfnasError(
            "cross-seed attenuation needs at least 3 architectures trained with several seeds; "
            f"the table has {len(groups)}"
        )
    out = {}
    for f in fidelities:
        same, cross = [], []
        for g in groups:
            for a in g:
                for b in g:
                    pair = (score_value(a, score, f), target_value(b, OBJECTIVE))
                    (same if a is b else cross).append(pair)
        rho_same = _spearman(same)
        rho_cross = _spearman(cross)
        out[f] = float(np.clip(rho_cross / rho_same, 0.0, 1.0)) if rho_same > 0 else 0.0
    return out


def _spearman(pairs: list[tuple[float, float]]) -> float:
    """The project's Spearman over the pairs with both values finite (nan below 3 pairs)."""
    x = np.array([p for p in pairs if math.isfinite(p[0]) and math.isfinite(p[1])], dtype=float)
    return spearman(x[:, 0], x[:, 1]) if len(x) >= 3 else math.nan


def fit_copula(
    table: SimTable,
    score: str,
    fidelities: Sequence[str] = ("init", "epoch1", "final"),
    attenuation: Mapping[str, float] | None = None,
) -> Copula:
    """Fit the copula of ``score`` at ``fidelities`` and the truth over the table's rows (rows
    missing any of them left out; at least 10 needed). ``attenuation`` (a fidelity's factor, see
    :func:`cross_seed_attenuation`) scales that fidelity's correlation with both truth columns."""
    direction = DIRECTION.get(score, 0.0)
    if direction == 0.0:
        raise SelfnasError(f"the copula needs a score with a direction, got {score!r}")
    cols = [[direction * score_value(r, score, f) for r in table.rows] for f in fidelities]
    data = np.array([*cols, table.val, table.test], dtype=float)
    keep = np.isfinite(data).all(axis=0)
    if keep.sum() < 10:
        raise SelfnasError(
            f"the copula needs at least 10 rows with {score} at {', '.join(fidelities)} and the truth; "
            f"the table has {int(keep.sum())}"
        )
    data = data[:, keep]
    z = np.array([normal_scores(c) for c in data])
    corr = np.corrcoef(z)
    f_count = len(fidelities)
    for j, f in enumerate(fidelities):
        factor = 1.0 if attenuation is None else float(attenuation.get(f, 1.0))
        corr[j, f_count:] *= factor
        corr[f_count:, j] *= factor
    corr = nearest_correlation(corr)
    return Copula(
        score=score,
        fidelities=tuple(fidelities),
        corr=corr,
        truth=(np.sort(data[-2]), np.sort(data[-1])),
        epochs=table.epochs,
    )


def _quantile(sorted_values: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The empirical quantile function of ``sorted_values`` at ``u`` in (0, 1), order statistic i
    sitting at (i + 1) / (n + 1) as in :func:`normal_scores`; flat beyond the ends."""
    n = sorted_values.size
    return np.interp(u, np.arange(1, n + 1) / (n + 1), sorted_values)


def draw_space(copula: Copula, n: int, rng: np.random.Generator) -> SimTable:
    """``n`` fresh architectures as a :class:`SimTable` the strategies of ``simulate.py`` accept
    (``screen`` and ``random``: they need no genotype parameters)."""
    if n < 1:
        raise SelfnasError(f"draw at least one architecture, got {n}")
    z = rng.multivariate_normal(np.zeros(len(copula.columns)), copula.corr, size=n, method="cholesky")
    u = norm.cdf(z)
    val = _quantile(copula.truth[0], u[:, -2])
    test = _quantile(copula.truth[1], u[:, -1])
    direction = DIRECTION[copula.score]
    fids = copula.fidelities
    rows = tuple(
        {
            "arch": f"c{i}",
            "seed": 0,
            "scores": {copula.score: {f: float(direction * z[i, j]) for j, f in enumerate(fids)}},
            "truth": {OBJECTIVE: float(val[i]), REPORTED: float(test[i])},
        }
        for i in range(n)
    )
    return SimTable(
        archs=tuple(r["arch"] for r in rows),
        val=val,
        test=test,
        names=(),
        choices=(),
        codes=np.zeros((n, 0), dtype=int),
        rows=rows,
        epochs=copula.epochs,
    )
