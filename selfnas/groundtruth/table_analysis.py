"""How well each label-free score of a ground-truth table ranks its architectures.

A table (``selfnas table``, see :mod:`selfnas.groundtruth.tables`) holds one JSON line per
(architecture, seed) with label-free scores at four fidelities and the labelled ground truth.
This module answers, for one table:

- **Quality**: for every score x fidelity, Spearman's rho and Kendall's tau-b between the
  sign-adjusted score (``DIRECTION[score] * score``, so a good score correlates positively) and
  ``linear_val`` / ``knn_val``, over the seed-0 rows (one per architecture), with a percentile
  bootstrap 95% interval over architectures. Rows whose score or target is missing or nan are
  skipped, and n says how many rows remain. The baselines ``params`` and ``flops`` (direction +1,
  fidelity ``"-"``) get the same treatment. A score without a direction (none or 0 in
  ``DIRECTION``: ``normalized_std``, a collapse monitor; ``alpha_req``, best near 1) is skipped.
  Correlations with ``linear_test`` / ``knn_test`` are reported (points only, no intervals) but
  never used to choose anything: the headline is val.
- **Collapse**: collapsed rows are counted and left out of every correlation (scores, baselines
  and the noise ceiling).
- **Noise ceiling**: for architectures with at least two seeds, the Spearman correlation of a
  target between two seeds, averaged over seed pairs: how well one training run ranks the
  architectures for another, the reference a score is read against (under classical test theory
  a score's correlation with one run's accuracy is bounded by about the square root of it).
- **Cost**: the seconds of each score (its own time plus the shared forward pass it needs, see
  :data:`SHARED_PASS`) and of one training epoch.

Bootstrap: :data:`RESAMPLES` resamples of the architectures (with replacement) drawn from a
``numpy`` generator seeded with ``seed`` afresh for each score x fidelity x target, so equal n
gives the same resampled architectures for every score (paired comparisons) and every run gives
the same intervals. Resamples on which the statistic is undefined (a constant resample) are
dropped; the interval is the 2.5 and 97.5 percentiles of the rest.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from selfnas.errors import SelfnasError
from selfnas.eval.correlation import kendall, spearman
from selfnas.io import read_jsonl
from selfnas.nas.scoring import BASELINES, DIRECTION, EMBEDDING_SCORES, ZERO_COST_SCORES

FIDELITIES = ("init", "quarter", "epoch1", "final")  # the order of selfnas.groundtruth.tables.FIDELITIES
BASELINE_FIDELITY = "-"
TARGETS = ("linear_val", "knn_val")  # the headline: intervals, what the figure shows
REPORTED_TARGETS = ("linear_test", "knn_test")  # reported only: points, never used to choose
RESAMPLES = 1000
LEVEL = 0.95
DEFAULT_EPOCHS = 6  # the table's default budget (selfnas.groundtruth.tables.table_train_defaults)
#: score -> the shared forward pass it needs, whose seconds are added to its own (``ssl_loss`` *is*
#: that pass, so it counts once; the zero-cost scores run their own passes and need none)
SHARED_PASS: dict[str, str] = {
    "rankme": "features",
    "rankme_normalized": "features",
    "alpha_req": "features",
    "alpha_req_distance": "features",
    "ssl_loss": "ssl_loss",
    "alignment": "ssl_loss",
    "uniformity": "ssl_loss",
    "view_retrieval": "ssl_loss",
    "lidar": "lidar_views",
}
COST_RULE = (
    "seconds of a score = mean over rows and fidelities of its own time plus the shared forward pass "
    "it needs (features: rankme, rankme_normalized, alpha_req, alpha_req_distance; ssl_loss: "
    "ssl_loss itself (counted once), alignment, uniformity, view_retrieval; lidar_views: lidar; "
    "none: naswot, synflow, grad_norm). params and flops are not timed (null). An epoch = "
    "seconds.train / epochs, averaged over rows; seconds.train includes the score measurements "
    "made during training, so epoch_seconds_without_scores subtracts every timed score second."
)
COLLAPSE_RULE = "collapsed rows are counted and left out of every correlation and of the noise ceiling"
#: the order of a folder's tables in results and figures: the known spaces first, then by name
SPACE_ORDER = ("heads", "cells", "resnet", "resnet-variants")


# -- reading ---------------------------------------------------------------------------------


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """The rows of the table at ``path`` (JSON Lines; [] when the file is absent or empty).

    Raises :class:`SelfnasError` naming the line of a row without ``arch``, ``seed`` or ``truth``.
    """
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not {"arch", "seed", "truth"} <= set(row):
            raise SelfnasError(f"{path}: record {i} is not a table row (it needs arch, seed and truth)")
    return rows


def table_paths(folder: Path) -> list[Path]:
    """The ``*.jsonl`` tables of ``folder`` (one space a file), known spaces first, then by name."""
    paths = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    rank = {name: i for i, name in enumerate(SPACE_ORDER)}
    return sorted(paths, key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def _number(value: object) -> float:
    """``value`` as a float; nan when it is absent, None, not a real number or not finite."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def score_value(row: Mapping[str, Any], score: str, fidelity: str) -> float:
    """The raw value of ``score`` at ``fidelity`` in ``row`` (a baseline: the top-level key), or nan."""
    if fidelity == BASELINE_FIDELITY:
        return _number(row.get(score))
    return _number(((row.get("scores") or {}).get(score) or {}).get(fidelity))


def target_value(row: Mapping[str, Any], target: str) -> float:
    """The ground truth ``target`` (``linear_val``, ``knn_val``, ...) of ``row``, or nan."""
    return _number((row.get("truth") or {}).get(target))


def is_collapsed(row: Mapping[str, Any]) -> bool:
    return bool(row.get("collapsed", False))


def has_direction(score: str) -> bool:
    """Whether ``score`` has a better side (``DIRECTION`` +1 or -1; a missing entry or 0 has none)."""
    return DIRECTION.get(score, 0.0) != 0.0


def score_keys(rows: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, str]], list[str]]:
    """The (score, fidelity) pairs present in ``rows`` whose score has a direction, in a fixed order
    (embedding scores, zero-cost scores, any newer ones by name; fidelities in table order; then the
    baselines with fidelity ``"-"``), and the score names skipped for having none (``normalized_std``,
    a collapse monitor; ``alpha_req``, best near 1, whose directed form is ``alpha_req_distance``)."""
    present: dict[str, set[str]] = {}
    for row in rows:
        for name, values in (row.get("scores") or {}).items():
            present.setdefault(name, set()).update(values or {})
    known = [*EMBEDDING_SCORES, *ZERO_COST_SCORES]
    names = [n for n in known if n in present] + sorted(set(present) - set(known))
    keys = [
        (name, f)
        for name in names
        if has_direction(name)
        for f in [*FIDELITIES, *sorted(present[name] - set(FIDELITIES))]
        if f in present[name]
    ]
    keys += [(b, BASELINE_FIDELITY) for b in BASELINES if any(b in row for row in rows)]
    return keys, sorted(n for n in present if not has_direction(n))


# -- correlations and their intervals -------------------------------------------------------------


def batch_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``x`` with the same row of ``y`` (B x n each): the Pearson
    correlation of the average ranks, as :func:`selfnas.eval.correlation.spearman` computes for one
    pair; nan for a row where either input is constant."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / denom
    rho[denom == 0] = math.nan
    return np.clip(rho, -1.0, 1.0)


def batch_kendall(x: np.ndarray, y: np.ndarray, chunk_elements: int = 2_000_000) -> np.ndarray:
    """Kendall's tau-b of each row of ``x`` with the same row of ``y`` (B x n each), as
    :func:`selfnas.eval.correlation.kendall` computes for one pair, from the n x n sign matrices
    (rows in chunks of about ``chunk_elements`` entries); nan for a row with a constant input."""
    b, n = x.shape
    out = np.empty(b)
    step = max(1, chunk_elements // max(1, n * n))
    for start in range(0, b, step):
        xs, ys = x[start : start + step], y[start : start + step]
        dx = np.sign(xs[:, :, None] - xs[:, None, :])
        dy = np.sign(ys[:, :, None] - ys[:, None, :])
        # over the n (n - 1) ordered pairs: sum dx dy = 2 (n_c - n_d), #(dx != 0) = 2 (n_0 - n_x)
        denom = np.sqrt(np.count_nonzero(dx, axis=(1, 2)) * np.count_nonzero(dy, axis=(1, 2)).astype(float))
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = (dx * dy).sum(axis=(1, 2)) / denom
        tau[denom == 0] = math.nan
        out[start : start + step] = tau
    return np.clip(out, -1.0, 1.0)


def _percentiles(values: np.ndarray, level: float) -> list[float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [math.nan, math.nan]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def correlate(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    interval: bool = True,
) -> dict[str, Any]:
    """Spearman and Kendall of ``x`` with ``y`` over the pairs where both are finite, with percentile
    bootstrap intervals over those pairs (``resamples`` draws from ``seed``; ``[nan, nan]`` when the
    point estimate is nan). Returns ``{"n", "spearman", "spearman_ci", "kendall", "kendall_ci"}``
    (no ``*_ci`` keys when ``interval`` is False). A constant input gives nan, not 0."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    out: dict[str, Any] = {"n": int(a.size), "spearman": spearman(a, b), "kendall": kendall(a, b)}
    if not interval:
        return out
    out["spearman_ci"] = out["kendall_ci"] = [math.nan, math.nan]
    if math.isnan(out["spearman"]) or resamples < 1:
        return out
    idx = np.random.default_rng(seed).integers(0, a.size, size=(resamples, a.size))
    out["spearman_ci"] = _percentiles(batch_spearman(a[idx], b[idx]), level)
    out["kendall_ci"] = _percentiles(batch_kendall(a[idx], b[idx]), level)
    return out


def seed0_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The seed-0 rows that did not collapse: one per architecture (the first, should one repeat)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        if row.get("seed") == 0 and not is_collapsed(row) and row["arch"] not in seen:
            seen.add(row["arch"])
            out.append(row)
    return out


def score_quality(
    rows: Sequence[Mapping[str, Any]], resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> list[dict[str, Any]]:
    """One entry per score x fidelity (and baseline) of ``rows``: how the sign-adjusted score ranks
    the seed-0, non-collapsed architectures against each target (see the module docstring).

    Each entry: ``{"score", "fidelity", "direction", "n", "linear_val": {...}, "knn_val": {...},
    "linear_test": {...}, "knn_test": {...}}``; ``n`` counts the rows with a finite score, each
    target's dict has its own n (rows with both values) and the :func:`correlate` fields."""
    usable = seed0_rows(rows)
    keys, _ = score_keys(rows)
    entries = []
    for score, fidelity in keys:
        direction = 1.0 if fidelity == BASELINE_FIDELITY else DIRECTION[score]
        x = np.array([direction * score_value(r, score, fidelity) for r in usable], dtype=np.float64)
        entry: dict[str, Any] = {
            "score": score,
            "fidelity": fidelity,
            "direction": direction,
            "n": int(np.isfinite(x).sum()),
        }
        for target in (*TARGETS, *REPORTED_TARGETS):
            y = np.array([target_value(r, target) for r in usable], dtype=np.float64)
            entry[target] = correlate(x, y, resamples, seed, level, interval=target in TARGETS)
        entries.append(entry)
    return entries


# -- the noise ceiling ----------------------------------------------------------------------------


def noise_ceiling(
    rows: Sequence[Mapping[str, Any]],
    target: str = "linear_val",
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Any]:
    """How well one training seed ranks the architectures for another: over the non-collapsed
    architectures with ``target`` at two or more seeds, Spearman's rho of ``target`` between each
    pair of seeds (over the architectures having both), averaged over the pairs with a defined rho.

    Returns ``{"spearman", "interval", "n_archs", "pairs": {"0-1": {"spearman", "n"}, ...}}``; the
    interval bootstraps the architectures (each resample keeps an architecture's seeds together).
    """
    values: dict[str, dict[int, float]] = {}
    for row in rows:
        v = target_value(row, target)
        if not is_collapsed(row) and math.isfinite(v):
            values.setdefault(row["arch"], {}).setdefault(int(row["seed"]), v)
    archs = sorted(a for a, seeds in values.items() if len(seeds) >= 2)
    seeds = sorted({s for a in archs for s in values[a]})
    matrix = np.array([[values[a].get(s, math.nan) for s in seeds] for a in archs], dtype=np.float64)
    matrix = matrix.reshape(len(archs), len(seeds))

    def mean_rho(m: np.ndarray) -> tuple[float, dict[str, dict[str, Any]]]:
        pairs = {}
        for i, j in itertools.combinations(range(len(seeds)), 2):
            both = np.isfinite(m[:, i]) & np.isfinite(m[:, j])
            rho = spearman(m[both, i], m[both, j])
            pairs[f"{seeds[i]}-{seeds[j]}"] = {"spearman": rho, "n": int(both.sum())}
        finite = [p["spearman"] for p in pairs.values() if not math.isnan(p["spearman"])]
        return (float(np.mean(finite)) if finite else math.nan), pairs

    rho, pairs = mean_rho(matrix)
    interval = [math.nan, math.nan]
    if not math.isnan(rho) and resamples >= 1:
        rng = np.random.default_rng(seed)
        draws = np.array(
            [mean_rho(matrix[rng.integers(0, len(archs), len(archs))])[0] for _ in range(resamples)]
        )
        interval = _percentiles(draws, level)
    return {"spearman": rho, "interval": interval, "n_archs": len(archs), "pairs": pairs}


# -- costs ------------------------------------------------------------------------------------------


def score_seconds(row: Mapping[str, Any], score: str, fidelity: str) -> float:
    """The seconds ``score`` cost at ``fidelity`` in ``row``: its own time plus the shared pass it
    needs (:data:`SHARED_PASS`, counted once); nan when the row did not time it."""
    timed = (row.get("score_seconds") or {}).get(fidelity) or {}
    own = _number(timed.get(score))
    shared = SHARED_PASS.get(score)
    if shared is None or shared == score:
        return own
    return own + _number(timed.get(shared))


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def score_costs(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``{score: {"seconds": mean over rows and fidelities, fidelity: mean over rows, ...}}`` for
    every timed score with a direction; every row counts (collapse does not change the cost)."""
    keys, _ = score_keys(rows)
    out: dict[str, dict[str, float]] = {}
    for score in dict.fromkeys(s for s, f in keys if f != BASELINE_FIDELITY):
        per = {f: [score_seconds(r, score, f) for r in rows] for f in FIDELITIES}
        means = {f: _mean(values) for f, values in per.items()}
        out[score] = {"seconds": _mean(v for values in per.values() for v in values)} | {
            f: m for f, m in means.items() if not math.isnan(m)
        }
    return out


def table_epochs(path: Path, default: float = DEFAULT_EPOCHS) -> tuple[float, str]:
    """The full training budget of a table file (``<stem>/plan.json``, else ``default``) and where
    it came from."""
    plan = Path(path).with_suffix("") / "plan.json"
    try:
        return float(json.loads(plan.read_text())["config"]["train"]["optim"]["epochs"]), str(plan)
    except (OSError, KeyError, TypeError, ValueError):
        return float(default), "default"


def epoch_cost(rows: Sequence[Mapping[str, Any]], epochs: float = DEFAULT_EPOCHS) -> dict[str, Any]:
    """Seconds of one training epoch: mean of ``seconds.train / epochs`` over the rows, and the same
    after subtracting every score second timed during training; the training seconds each fidelity
    needs (init 0, quarter 1/4 epoch, epoch1 one epoch, final ``epochs``)."""
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    raw, net = [], []
    for row in rows:
        train = _number((row.get("seconds") or {}).get("train"))
        timed = sum(
            _number(s)
            for per in (row.get("score_seconds") or {}).values()
            for s in (per or {}).values()
            if math.isfinite(_number(s))
        )
        raw.append(train / epochs)
        net.append((train - timed) / epochs)
    epoch = _mean(raw)
    return {
        "epochs": epochs,
        "epoch_seconds": epoch,
        "epoch_seconds_without_scores": _mean(net),
        "rows": sum(math.isfinite(v) for v in raw),
        "fidelity_training_seconds": {
            "init": 0.0,
            "quarter": epoch / 4,
            "epoch1": epoch,
            "final": epoch * epochs,
        },
    }


# -- one table --------------------------------------------------------------------------------------


def analyse_table(
    rows: Sequence[Mapping[str, Any]],
    epochs: float = DEFAULT_EPOCHS,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Everything above for one table's rows: counts, collapse, noise ceilings, every score x
    fidelity with its correlations and its cost, and the cost of an epoch."""
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    seed0 = [r for r in rows if r.get("seed") == 0]
    _, skipped = score_keys(rows)
    costs = score_costs(rows)
    entries = score_quality(rows, resamples, seed, level)
    for entry in entries:
        cost = costs.get(entry["score"], {})
        entry["seconds"] = cost.get(entry["fidelity"], math.nan) if cost else None
    return {
        "rows": len(rows),
        "archs": len(archs),
        "seed0_rows": len(seed0),
        "seed0_usable": len(seed0_rows(rows)),
        "collapsed": {
            "rows": sum(is_collapsed(r) for r in rows),
            "seed0_rows": sum(is_collapsed(r) for r in seed0),
            "archs": sorted({r["arch"] for r in rows if is_collapsed(r)}),
            "rule": COLLAPSE_RULE,
        },
        "noise_ceiling": {t: noise_ceiling(rows, t, resamples, seed, level) for t in TARGETS},
        "scores": entries,
        "skipped_scores": skipped,
        "cost": {"scores": costs, **epoch_cost(rows, epochs), "rule": COST_RULE},
        "bootstrap": {
            "resamples": resamples,
            "seed": seed,
            "level": level,
            "over": "architectures (seed-0 rows); percentile interval; undefined resamples dropped",
        },
    }


def jsonable(obj: Any) -> Any:
    """``obj`` with every non-finite float turned into None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return obj


def compact_json(obj: Any, indent: int = 0) -> str:
    """JSON with one key a line and every list on one line (a summary that reads in a terminal)."""
    if isinstance(obj, dict) and obj:
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(str(k))}: {compact_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj)


GOAL_RHO = 0.6  # issue 20: a label-free score with Spearman >= 0.6 against linear_val
MIN_ARCHS = 10  # a space enters the choice of the default score with at least this many architectures


def choose_default_score(
    spaces: Mapping[str, Mapping[str, Any]],
    candidates: Sequence[str],
    fidelities: Sequence[str] = ("epoch1", "final"),
    target: str = "linear_val",
) -> dict[str, Any]:
    """The label-free score with the best mean Spearman with ``target`` over the spaces, per fidelity.

    ``spaces``: :func:`analyse_table` results by space name; a space with fewer than
    :data:`MIN_ARCHS` usable architectures is left out (and named). ``candidates``: the selectable
    label-free scores (only scores present in every counted space are ranked). Returns
    ``{"spaces": [...], "left_out": [...], "by_fidelity": {fidelity: {"ranking": [[score, mean rho,
    {space: rho}], ...] best first, "best": score}}, "goal": {score@fidelity: spaces where rho >=
    GOAL_RHO and above both params and flops}}``. Test correlations are never read."""
    counted = [s for s, r in spaces.items() if r.get("seed0_usable", 0) >= MIN_ARCHS]
    rho: dict[str, dict[tuple[str, str], float]] = {}
    for space in counted:
        rho[space] = {
            (e["score"], e["fidelity"]): e[target]["spearman"]
            for e in spaces[space]["scores"]
            if e[target]["spearman"] is not None and math.isfinite(e[target]["spearman"])
        }
    out: dict[str, Any] = {
        "target": target, "spaces": counted, "left_out": [s for s in spaces if s not in counted],
        "by_fidelity": {}, "goal": {}, "goal_rho": GOAL_RHO, "min_archs": MIN_ARCHS,
    }  # fmt: skip
    if not counted:
        return out
    for fidelity in fidelities:
        ranking = []
        for score in candidates:
            per = {s: rho[s].get((score, fidelity)) for s in counted}
            if all(v is not None for v in per.values()):
                ranking.append([score, float(np.mean(list(per.values()))), per])
        ranking.sort(key=lambda r: -r[1])
        out["by_fidelity"][fidelity] = {"ranking": ranking, "best": ranking[0][0] if ranking else None}
        for score, _, per in ranking:
            wins = [
                s for s, v in per.items()
                if v >= GOAL_RHO and all(v > rho[s].get((b, BASELINE_FIDELITY), -math.inf) for b in BASELINES)
            ]  # fmt: skip
            out["goal"][f"{score}@{fidelity}"] = wins
    return out


def pick_by_score(
    rows: Iterable[Mapping[str, Any]], score: str, fidelity: str = "final"
) -> Mapping[str, Any]:
    """The seed-0, non-collapsed row a search by ``score`` at ``fidelity`` would pick: the best
    sign-adjusted value (``DIRECTION``); a row without a finite value is never picked. This is the
    choice of a study that trained every architecture of the table, made without labels."""
    if not has_direction(score):
        raise SelfnasError(
            f"score {score!r} has no direction to pick by; choose one of "
            + ", ".join(s for s in DIRECTION if has_direction(s))
        )
    scored = []
    for row in seed0_rows(rows):
        value = score_value(row, score, fidelity)
        if math.isfinite(value):
            scored.append((DIRECTION[score] * value, row))
    if not scored:
        raise SelfnasError(f"no usable row has {score}@{fidelity}; build the table first")
    return max(scored, key=lambda pair: pair[0])[1]
