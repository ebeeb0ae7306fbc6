"""NAS-Bench-style simulated search studies: look the accuracy up in a ground-truth table.

A table (:mod:`selfnas.groundtruth.tables`) trained every architecture once; a search strategy run
against it "trains" an architecture by reading its seed-0 ``linear_val`` (the objective; test is
never used to choose, only reported for each study's pick), so thousands of repeated studies take
seconds. The search space is the table's architectures (collapsed rows and rows without
``linear_val`` left out). Strategies (each returns a :data:`Trace`):

- ``random``: a random permutation (sampling without replacement).
- ``tpe``: Optuna's TPESampler over categorical parameters, one per leaf of the genotype JSON
  that varies across the table (a head layer's op, a cell edge's op and input, a ResNet field;
  a row without a genotype, the reference ``default``, takes :data:`NONE` everywhere; a leaf that
  splits the architectures exactly as an earlier one does is left out as redundant). A suggested
  combination is mapped to the **nearest unseen architecture** by Hamming distance over those
  parameters (exact when the combination is in the table; ties broken at random); when it is not
  exact, the asked trial is told FAIL and the architecture actually evaluated is added with its own
  parameters, so TPE learns only from what was measured.
- ``evolution``: regularised evolution (Real et al. 2019): random until ``population`` are seen,
  then the best of ``sample`` random members of the last ``population`` evaluations has one
  parameter changed to another value the table holds; the nearest unseen architecture is evaluated.
- ``halving``: successive halving in brackets of ``bracket`` unseen architectures: rank by
  ``DIRECTION[score] * score`` at ``quarter``, keep the top ``ceil(n / eta)``, rank those at
  ``epoch1``, keep the top ``ceil(n / eta)`` and pay the full budget for them (look up
  ``linear_val``); brackets repeat until the budget or the table is spent. Cost: a quarter epoch,
  one epoch, then the table's ``epochs``, divided by ``epochs``; with ``resume`` (the default) a
  promoted architecture continues its run (the table's scores are checkpoints of one run), so it
  pays only the difference.

Every strategy takes ``first``: architecture indices evaluated (halving: ranked) before any other,
a warm start such as the reference head; the rest follow in the strategy's own order.

Cost unit: full-training equivalents ("trials"); random/tpe/evolution pay 1 per architecture.
Regret at t = (best ``linear_val`` in the table) - (best ``linear_val`` fully evaluated at
cumulative cost <= t); before the first full evaluation it is best - worst (nothing known counts as
the worst architecture). Repeat r of :func:`simulate` draws from ``numpy.random.default_rng(r)``
(TPE's seed is drawn from it), so every strategy sees seeds 0..R-1 and results are reproducible.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from selfnas.errors import SelfnasError
from selfnas.groundtruth.table_analysis import (
    DEFAULT_EPOCHS,
    SHARED_PASS,
    read_table,
    score_value,
    seed0_rows,
    target_value,
)
from selfnas.nas.scoring import DIRECTION

NONE = "<none>"  # the value of every parameter of a row without a genotype
HEADER_KEYS = frozenset({"format", "version", "space", "method"})
OBJECTIVE, REPORTED = "linear_val", "linear_test"
TOP_FRACTION = 0.05
BAND = (10.0, 90.0)  # percentiles over repeats
HALVING_RUNGS = (("quarter", 0.25), ("epoch1", 1.0))  # fidelity, epochs of training it needs
#: (cumulative cost in full-training equivalents, architecture index) of each full evaluation, in order
Trace = list[tuple[float, int]]
Strategy = Callable[..., Trace]


@dataclass(frozen=True)
class SimTable:
    """The lookup of one table: n architectures, P categorical parameters."""

    archs: tuple[str, ...]  # n architecture ids
    val: np.ndarray  # (n,) linear_val, the objective
    test: np.ndarray  # (n,) linear_test (nan when absent), reported only
    names: tuple[str, ...]  # P parameter names (genotype leaf paths)
    choices: tuple[tuple[str, ...], ...]  # P tuples of the values the table holds (JSON strings)
    codes: np.ndarray  # (n, P) int: index of each architecture's value in choices
    rows: tuple[Mapping[str, Any], ...]  # the n seed-0 rows (for scores)
    epochs: float  # training epochs of the full budget

    @property
    def n(self) -> int:
        return len(self.archs)

    @property
    def best(self) -> float:
        return float(self.val.max())

    @property
    def top_k(self) -> int:
        """How many architectures make the top :data:`TOP_FRACTION` (at least 1: the best)."""
        return max(1, math.ceil(TOP_FRACTION * self.n))

    @property
    def threshold(self) -> float:
        """The ``linear_val`` an architecture needs to be in the top :data:`TOP_FRACTION`."""
        return float(np.sort(self.val)[::-1][self.top_k - 1])


def flatten(genotype: Any, prefix: str = "") -> dict[str, str]:
    """``{"projector.layers.0.op": '"identity"', ...}``: every leaf of a genotype JSON (header keys
    left out) as a JSON string, so lists, ints and strings are all categorical values."""
    if isinstance(genotype, Mapping):
        items = [(k, v) for k, v in genotype.items() if not (prefix == "" and k in HEADER_KEYS)]
    elif isinstance(genotype, list | tuple):
        items = [(str(i), v) for i, v in enumerate(genotype)]
    else:
        return {prefix: json.dumps(genotype)}
    out: dict[str, str] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    return out


def load_table(source: str | Path | Sequence[Mapping[str, Any]], epochs: float = DEFAULT_EPOCHS) -> SimTable:
    """The lookup of a table file (or its rows): seed-0, non-collapsed rows with a finite linear_val."""
    rows = read_table(source) if isinstance(source, str | Path) else list(source)
    usable = [r for r in seed0_rows(rows) if math.isfinite(target_value(r, OBJECTIVE))]
    if not usable:
        raise SelfnasError(f"{source if isinstance(source, str | Path) else 'table'}: no usable seed-0 row")
    if epochs <= 0:
        raise SelfnasError(f"epochs must be positive, got {epochs}")
    flat = [flatten(r["genotype"]) if r.get("genotype") else {} for r in usable]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    values = {k: [f.get(k, NONE) for f in flat] for k in keys}
    splits: dict[tuple[int, ...], str] = {}  # how a parameter partitions the archs -> its first name
    for k in keys:  # a constant, or a copy of an earlier split (a null genotype's dims), tells nothing
        first_seen = {v: j for j, v in enumerate(dict.fromkeys(values[k]))}
        split = tuple(first_seen[v] for v in values[k])
        if len(set(split)) > 1:
            splits.setdefault(split, k)
    names = tuple(splits.values())
    choices = tuple(tuple(sorted(set(values[k]))) for k in names)
    codes = np.array(
        [[c.index(values[k][i]) for k, c in zip(names, choices, strict=True)] for i in range(len(usable))]
    )
    return SimTable(
        archs=tuple(r["arch"] for r in usable),
        val=np.array([target_value(r, OBJECTIVE) for r in usable]),
        test=np.array([target_value(r, REPORTED) for r in usable]),
        names=names,
        choices=choices,
        codes=codes.reshape(len(usable), len(names)),
        rows=tuple(usable),
        epochs=float(epochs),
    )


# -- strategies: (table, trials, rng, first=(), **options) -> Trace ------------------------------


def _order(table: SimTable, rng: np.random.Generator, first: Sequence[int]) -> list[int]:
    """``first``, then the other architectures in a random order."""
    rest = [int(i) for i in rng.permutation(table.n) if int(i) not in set(first)]
    return [*dict.fromkeys(int(i) for i in first), *rest]


def _nearest(table: SimTable, codes: np.ndarray, seen: np.ndarray, rng: np.random.Generator) -> int:
    """The unseen architecture whose parameters (P codes) differ from ``codes`` in fewest places."""
    distance = (table.codes != codes).sum(axis=1).astype(float)
    distance[seen] = np.inf
    ties = np.flatnonzero(distance == distance.min())
    return int(rng.choice(ties))


def _goodness(table: SimTable, arch: int, score: str, fidelity: str) -> float:
    """``DIRECTION[score] * score`` of ``arch`` at ``fidelity`` (higher is better); -inf when not
    measured or not finite, so such an architecture ranks last."""
    value = DIRECTION[score] * score_value(table.rows[arch], score, fidelity)
    return value if math.isfinite(value) else -math.inf


def random_search(table: SimTable, trials: int, rng: np.random.Generator, first: Sequence[int] = ()) -> Trace:
    return [(float(t), i) for t, i in enumerate(_order(table, rng, first)[:trials], 1)]


def tpe_search(
    table: SimTable,
    trials: int,
    rng: np.random.Generator,
    first: Sequence[int] = (),
    startup: int = 10,
    multivariate: bool = False,
    score: str | None = None,
    eta: int | None = None,
) -> Trace:
    """Optuna TPE over the table's parameters, nearest-unseen mapping (see the module docstring).

    ``score``: the study's value is ``DIRECTION[score] * score`` at ``final`` (a label-free search,
    as ``selfnas search`` runs) instead of the oracle ``linear_val``. ``eta``: Optuna's
    SuccessiveHalvingPruner (min resource 1 epoch, reduction factor ``eta``) on the score at
    ``epoch1``, as the search's default pruner: a pruned architecture costs one epoch of the
    table's ``epochs`` and is never fully evaluated. A suggestion that is not exactly in the table
    is told FAIL and the nearest unseen architecture is asked again as an enqueued trial, so every
    value and pruning decision belongs to an architecture that was measured."""
    if eta is not None and score is None:
        raise SelfnasError("tpe with pruning needs a score to prune on")
    direction = DIRECTION.get(score, 0.0) if score is not None else 1.0
    if direction == 0.0:
        raise SelfnasError(f"tpe needs a score with a direction, got {score!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=int(rng.integers(2**31)), n_startup_trials=startup, multivariate=multivariate
    )
    pruner = (
        optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=eta)
        if eta is not None
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    space = dict(zip(table.names, table.choices, strict=True))
    seen = np.zeros(table.n, dtype=bool)
    trace: Trace = []
    cost = 0.0
    queue = list(dict.fromkeys(int(i) for i in first))

    def value(arch: int, fidelity: str) -> float:
        if score is None:
            return float(table.val[arch])
        return direction * score_value(table.rows[arch], score, fidelity)  # nan when not measured

    while not seen.all() and cost < trials - 1e-9:
        trial = study.ask()
        if queue:
            arch, exact = queue.pop(0), False
        else:
            asked = {n: trial.suggest_categorical(n, c) for n, c in space.items()}
            codes = np.array([c.index(asked[n]) for n, c in space.items()], dtype=int)
            arch = _nearest(table, codes, seen, rng)
            exact = bool((table.codes[arch] == codes).all())
        if not exact:  # the architecture measured, asked as its own trial: learn only from what was measured
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial({n: c[k] for (n, c), k in zip(space.items(), table.codes[arch], strict=True)})
            trial = study.ask()
            for n, c in space.items():
                trial.suggest_categorical(n, c)
        seen[arch] = True
        if eta is not None:
            early = value(arch, "epoch1")
            if not math.isfinite(early):  # the search fails a trial whose score is not finite
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                cost += 1.0 / table.epochs
                continue
            trial.report(early, step=1)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                cost += 1.0 / table.epochs
                continue
        cost += 1.0
        final = value(arch, "final")
        study.tell(trial, final if math.isfinite(final) else None,
                   state=None if math.isfinite(final) else optuna.trial.TrialState.FAIL)  # fmt: skip
        trace.append((cost, arch))
    return trace


def evolution_search(
    table: SimTable,
    trials: int,
    rng: np.random.Generator,
    first: Sequence[int] = (),
    population: int = 10,
    sample: int = 3,
) -> Trace:
    """Regularised evolution with one-parameter mutations (see the module docstring)."""
    order = _order(table, rng, first)
    seen = np.zeros(table.n, dtype=bool)
    history: list[int] = []
    while len(history) < min(trials, table.n):
        if len(history) < population or not table.names:
            arch = next(i for i in order if not seen[i])
        else:
            alive = history[-population:]
            contenders = [
                alive[int(j)] for j in rng.choice(len(alive), min(sample, len(alive)), replace=False)
            ]
            child = table.codes[max(contenders, key=lambda i: table.val[i])].copy()
            p = int(rng.integers(len(table.names)))
            others = [c for c in range(len(table.choices[p])) if c != child[p]]
            child[p] = int(rng.choice(others))
            arch = _nearest(table, child, seen, rng)
        seen[arch] = True
        history.append(arch)
    return [(float(t), i) for t, i in enumerate(history, 1)]


def halving_search(
    table: SimTable,
    trials: int,
    rng: np.random.Generator,
    first: Sequence[int] = (),
    score: str = "ssl_loss",
    eta: int = 3,
    bracket: int = 9,
    resume: bool = True,
) -> Trace:
    """Successive halving over quarter -> epoch1 -> full budget (see the module docstring)."""
    direction = DIRECTION.get(score, 0.0)
    if direction == 0.0:
        raise SelfnasError(f"halving needs a score with a direction, got {score!r}")
    if eta < 2 or bracket < 1:
        raise SelfnasError(f"halving needs eta >= 2 and bracket >= 1, got eta={eta}, bracket={bracket}")
    order, cost, trace = _order(table, rng, first), 0.0, []
    for start in range(0, table.n, bracket):
        alive, trained = order[start : start + bracket], 0.0  # epochs each survivor has had
        for fidelity, epochs in HALVING_RUNGS:
            cost += len(alive) * (epochs - trained if resume else epochs) / table.epochs
            trained = epochs
            alive = sorted(alive, key=lambda i: -_goodness(table, i, score, fidelity))
            alive = alive[: math.ceil(len(alive) / eta)]
        for arch in alive:
            cost += (table.epochs - trained if resume else table.epochs) / table.epochs
            trace.append((cost, arch))
        if cost >= trials:
            break
    return trace


def screen_cost(table: SimTable, score: str) -> float:
    """One candidate's screening at initialisation in full-training equivalents: the median over
    the table's rows of (the seconds of ``score`` at ``init`` and of the pass it shares) / (the
    row's training seconds)."""
    fractions = []
    for row in table.rows:
        spent = (row.get("score_seconds") or {}).get("init") or {}
        shared = SHARED_PASS.get(score)
        seconds = float(spent.get(score, math.nan)) + (
            float(spent.get(shared, 0.0)) if shared != score else 0.0
        )
        seconds += float(spent.get("calibration", 0.0))  # precise BatchNorm before the pass
        train = float(((row.get("seconds") or {}).get("train")) or math.nan)
        if math.isfinite(seconds) and math.isfinite(train) and train > 0:
            fractions.append(seconds / train)
    if not fractions:
        raise SelfnasError(f"the table records no init seconds of {score!r}: cannot price its screening")
    return float(np.median(fractions))


def screen_search(
    table: SimTable,
    trials: int,
    rng: np.random.Generator,
    first: Sequence[int] = (),
    screen: int = 40,
    keep: int = 3,
    score: str = "view_retrieval",
    cost: float | None = None,
    eta: int | None = None,
    replace: bool = False,
) -> Trace:
    """Screen, then train the few: ``screen`` architectures drawn at random (``first`` among them)
    are scored at initialisation (``score`` at ``init``, no training) for ``cost`` each (default
    :func:`screen_cost`); the best ``keep`` are then trained in that order at the full budget.
    With ``eta`` the trained ones pass a halving rung first: each gets one epoch, the best
    ``ceil(keep / eta)`` by ``score`` at ``epoch1`` continue to the full budget (a promoted run
    continues, paying only the difference). With ``replace`` the pool is drawn with replacement
    (each draw paid), as from a space much larger than the table: the table's distribution without
    the certainty that its best member is screened. Costs in full-training equivalents."""
    direction = DIRECTION.get(score, 0.0)
    if direction == 0.0:
        raise SelfnasError(f"screening needs a score with a direction, got {score!r}")
    if screen < 1 or keep < 1:
        raise SelfnasError(f"screening needs screen >= 1 and keep >= 1, got {screen} and {keep}")
    if replace:
        draws = [int(i) for i in rng.choice(table.n, screen, replace=True)]
        spent = len(draws) * (screen_cost(table, score) if cost is None else float(cost))
        pool = list(dict.fromkeys([*first, *draws]))[:screen]
    else:
        pool = _order(table, rng, first)[:screen]
        spent = len(pool) * (screen_cost(table, score) if cost is None else float(cost))

    alive = sorted(pool, key=lambda i: -_goodness(table, i, score, "init"))[:keep]
    trained = 0.0
    if eta is not None:
        spent += len(alive) * 1.0 / table.epochs
        trained = 1.0
        alive = sorted(alive, key=lambda i: -_goodness(table, i, score, "epoch1"))[
            : math.ceil(len(alive) / eta)
        ]
    trace: Trace = []
    for arch in alive:
        spent += (table.epochs - trained) / table.epochs
        trace.append((spent, arch))
    return trace


def pick_by_score(table: SimTable, trace: Trace, budget: float, score: str) -> int | None:
    """The architecture a label-free search returns: among the fully trained ones within
    ``budget``, the best by ``score`` at ``final`` (None when none was trained in budget)."""
    done = [i for c, i in trace if c <= budget + 1e-9]
    if not done:
        return None
    return max(done, key=lambda i: _goodness(table, i, score, "final"))


STRATEGIES: dict[str, Strategy] = {
    "random": random_search,
    "screen": screen_search,
    "tpe": tpe_search,
    "evolution": evolution_search,
    "halving": halving_search,
}


# -- regret and repeats ---------------------------------------------------------------------------


def regret_curve(table: SimTable, trace: Trace, trials: int) -> np.ndarray:
    """(trials,) regret at cost t = 1..trials (best - worst before the first full evaluation)."""
    t = np.arange(1, trials + 1, dtype=float)
    if not trace:
        return np.full(trials, table.best - float(table.val.min()))
    costs = np.array([c for c, _ in trace])
    found = np.maximum.accumulate(table.val[[i for _, i in trace]])
    idx = np.searchsorted(costs, t + 1e-9, side="right") - 1
    best_found = np.where(idx >= 0, found[np.maximum(idx, 0)], float(table.val.min()))
    return table.best - best_found


def _stat(values: np.ndarray, fn: Callable[[np.ndarray], Any]) -> float | None:
    value = float(fn(values)) if values.size else math.nan
    return value if math.isfinite(value) else None


def simulate(
    table: SimTable, strategy: str | Strategy, repeats: int = 200, trials: int = 40, **options: Any
) -> dict[str, Any]:
    """``repeats`` studies of ``trials`` full-training equivalents each (seeds 0..repeats-1).

    Returns JSON-ready ``{"strategy", "options", "repeats", "trials", "t": [1..T], "mean", "lo",
    "hi"`` (T regrets each: mean and the :data:`BAND` percentiles over repeats; the mean leaves the
    band where over 90% of repeats share one regret and the rest lie to one side), ``"trials_to_top"``
    (cost of the first full evaluation in the top :data:`TOP_FRACTION`: mean and ``reached`` over the
    repeats that got there within ``trials``, median over all with the rest counted as never, so
    None when fewer than half got there, and ``restricted_mean`` over all with the rest counted as
    the whole budget ``trials``: a lower bound on the true mean that, unlike ``mean``, does not
    favour a strategy whose unlucky repeats never get there), ``"pick"`` (mean linear_val and
    linear_test of each study's best-by-val architecture within budget; None when a study evaluated
    nothing in budget)}``."""
    fn = STRATEGIES.get(strategy) if isinstance(strategy, str) else strategy
    if fn is None:
        raise SelfnasError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if repeats < 1 or trials < 1:
        raise SelfnasError(f"repeats and trials must be positive, got {repeats} and {trials}")
    curves = np.empty((repeats, trials))
    reach, pick_val, pick_test = np.full(repeats, np.inf), np.full(repeats, np.nan), np.full(repeats, np.nan)
    for r in range(repeats):
        trace = [
            (c, i) for c, i in fn(table, trials, np.random.default_rng(r), **options) if c <= trials + 1e-9
        ]
        curves[r] = regret_curve(table, trace, trials)
        hits = [c for c, i in trace if table.val[i] >= table.threshold]
        reach[r] = hits[0] if hits else np.inf
        if trace:
            pick = max((i for _, i in trace), key=lambda i: table.val[i])
            pick_val[r], pick_test[r] = table.val[pick], table.test[pick]
    reached = reach[np.isfinite(reach)]
    return {
        "strategy": strategy if isinstance(strategy, str) else getattr(strategy, "__name__", "custom"),
        "options": {k: list(v) if k == "first" else v for k, v in options.items()},
        "repeats": repeats,
        "trials": trials,
        "t": list(range(1, trials + 1)),
        "mean": curves.mean(axis=0).tolist(),
        "lo": np.percentile(curves, BAND[0], axis=0).tolist(),
        "hi": np.percentile(curves, BAND[1], axis=0).tolist(),
        "trials_to_top": {
            "mean": _stat(reached, np.mean),
            "median": _stat(reach, np.median),
            "reached": int(reached.size),
            "restricted_mean": _stat(np.minimum(reach, trials), np.mean),
            "top_k": table.top_k,
            "threshold": table.threshold,
        },
        "pick": {
            "linear_val": _stat(pick_val[np.isfinite(pick_val)], np.mean),
            "linear_test": _stat(pick_test[np.isfinite(pick_test)], np.mean),
        },
    }
