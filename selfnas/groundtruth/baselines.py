"""The baselines a search result is judged against (Li & Talwalkar 2019; Yang et al. 2020).

Every search benchmark and the main job read a find against the same three things:

- **random search at equal compute**: the same space, the same label-free score choosing among
  the completed trainings, the same total training epochs as the search spent (pruned epochs and
  screening included). At a ground-truth table's budget the table's rows *are* random members of
  the space trained at that budget, so the control's expected accuracy is computed exactly over
  every draw of ``k`` rows (:func:`random_search_expectation`), not from one sample;
- **the space's random-architecture distribution**: its median, the find's percentile in it and the
  relative improvement ``RI = 100 * (found - median) / median`` (:func:`against_random`);
- **the hand-crafted default at equal feature width** (:func:`equal_width_default`): the default
  backbone is widened until the probe sees as many features as it sees from the find.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from selfnas.errors import SelfnasError

#: the hand-crafted default backbone and the settings it is widened from
DEFAULT_BACKBONE = "resnet_small"
DEFAULT_WIDTH, DEFAULT_DEPTHS = 16, (1, 1, 1)
EQUAL_WIDTH_RULE = f"{DEFAULT_BACKBONE} widened (every stage alike) to the find's feature width"


def equal_compute_trainings(spent_epochs: float, epochs_per_training: float) -> float:
    """Full trainings a random search may pay for with the epochs a search spent: ``spent / per``.

    ``spent_epochs`` counts every epoch the search trained (completed trials, pruned trials up to
    where they stopped, screening converted to epochs at the same speed)."""
    if not (math.isfinite(spent_epochs) and spent_epochs >= 0):
        raise SelfnasError(f"spent epochs must be a finite non-negative number, got {spent_epochs}")
    if not (math.isfinite(epochs_per_training) and epochs_per_training > 0):
        raise SelfnasError(f"epochs per training must be positive, got {epochs_per_training}")
    return spent_epochs / epochs_per_training


def search_epochs(trials: Sequence[Mapping[str, Any]], trial_epochs: float) -> float:
    """Training epochs a study's trials spent: ``trial_epochs`` for a completed (or failed after
    training) trial, the last reported epoch for a pruned one, nothing for a trial cancelled or over
    the size cap before it trained, nothing for a failed trial that was retried (its worker died:
    a crash of the machine, not a choice of the search; the retry trains from scratch and is
    charged). ``trials`` are ``trials.jsonl`` rows (``number``, ``state``, ``intermediate``: epoch
    -> value, ``cancelled``, ``over_cap``, ``retry_of``)."""
    retried = {t.get("retry_of") for t in trials if t.get("retry_of") is not None}
    spent = 0.0
    for t in trials:
        if t.get("over_cap") or t.get("cancelled"):
            continue
        if t.get("state") == "FAIL" and t.get("number") in retried:
            continue
        reported = [float(k) for k in (t.get("intermediate") or {})]
        if t.get("state") == "COMPLETE":
            spent += trial_epochs
        elif t.get("state") == "PRUNED":
            spent += min(max(reported, default=0.0), trial_epochs)
        elif t.get("state") == "FAIL":
            spent += min(max(reported, default=trial_epochs), trial_epochs)
    return spent


def _pick_expectation(truth: np.ndarray, score: np.ndarray, k: int) -> float:
    """E[truth of the best-by-score row] over all k-subsets of the rows, drawn uniformly."""
    n = truth.size
    order = np.argsort(-score, kind="stable")  # best score first
    # the j-th best is the pick when it is drawn and none of the j better ones are
    weights = np.array([math.comb(n - 1 - j, k - 1) for j in range(n)], dtype=float) / math.comb(n, k)
    return float(np.dot(weights, truth[order]))


def random_search_expectation(truth: Sequence[float], score: Sequence[float], budget: float) -> float:
    """The expected ``truth`` of a random search that trains ``budget`` random members of the space
    and returns the best by ``score`` (higher is better: apply the score's direction first).

    Exact over every draw without replacement of the ``n`` rows. A fractional budget trains
    ``floor(budget)`` or one more with the probabilities that make the mean exactly ``budget``
    (no more and no less training than the search had); a budget past ``n`` trains all ``n``."""
    t = np.asarray(truth, dtype=float)
    s = np.asarray(score, dtype=float)
    if t.shape != s.shape or t.ndim != 1 or t.size == 0:
        raise SelfnasError("random search needs one truth and one score per row, and rows")
    if not np.isfinite(t).all():
        raise SelfnasError("random search: every row needs a finite truth")
    if not (math.isfinite(budget) and budget >= 1):
        raise SelfnasError(f"random search needs a budget of at least one training, got {budget}")
    s = np.where(np.isfinite(s), s, -np.inf)  # an unscored row (failed) is never the pick
    low = min(int(math.floor(budget)), t.size)
    frac = budget - math.floor(budget) if low < t.size else 0.0
    value = _pick_expectation(t, s, low)
    if frac > 0:
        value = (1 - frac) * value + frac * _pick_expectation(t, s, low + 1)
    return value


def percentile(value: float, population: Sequence[float]) -> float:
    """Share (%) of ``population`` below ``value``, ties counted half."""
    p = np.asarray(population, dtype=float)
    if p.size == 0:
        raise SelfnasError("a percentile needs a population")
    return float(100.0 * ((p < value).sum() + 0.5 * (p == value).sum()) / p.size)


def relative_improvement(found: float, reference: float) -> float:
    """``RI = 100 * (found - reference) / reference`` (Yang et al. 2020)."""
    if reference == 0 or not math.isfinite(reference):
        raise SelfnasError(f"relative improvement needs a non-zero reference, got {reference}")
    return 100.0 * (found - reference) / reference


def in_top(value: float, population: Sequence[float], fraction: float = 0.10) -> bool:
    """Whether ``value`` reaches the ``fraction`` best of ``population`` (its ``ceil(fraction*n)``-th
    largest value, so at least the single best)."""
    p = np.sort(np.asarray(population, dtype=float))[::-1]
    if p.size == 0:
        raise SelfnasError("a top fraction needs a population")
    return bool(value >= p[max(1, math.ceil(fraction * p.size)) - 1])


def against_random(found: float, population: Sequence[float]) -> dict[str, float]:
    """The find against the space's random-architecture distribution: median, percentile, RI."""
    median = float(np.median(np.asarray(population, dtype=float)))
    return {
        "random_median": median,
        "percentile": percentile(found, population),
        "ri": relative_improvement(found, median),
        "n": int(len(population)),
    }


def feature_width(update: Mapping[str, Any]) -> int:
    """The features a model ``update``'s backbone gives the probe (its ``out_dim``; a fresh build,
    whose width does not depend on the input channels)."""
    from selfnas.models.backbones import create_backbone

    return int(create_backbone(update["backbone"], **update["backbone_kwargs"]).out_dim)


def equal_width_default(out_dim: int) -> dict[str, Any]:
    """The hand-crafted default backbone widened so that it gives the probe ``out_dim`` features:
    ``resnet_small`` keeps its depths and multiplies every stage's width alike (its ``out_dim`` is
    ``width * 2**(stages - 1)``). Returns the ``model`` config update (backbone, backbone_kwargs)."""
    scale = 2 ** (len(DEFAULT_DEPTHS) - 1)
    if out_dim < scale or out_dim % scale:
        raise SelfnasError(
            f"{DEFAULT_BACKBONE} gives out_dim = width * {scale}; no width gives {out_dim} features"
        )
    return {
        "backbone": DEFAULT_BACKBONE,
        "backbone_kwargs": {"width": out_dim // scale, "depths": list(DEFAULT_DEPTHS)},
    }
