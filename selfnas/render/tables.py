"""The kNN / linear-probe result table: one formatter for the CLI, the model card, the report and
``selfnas info``.

It reads an evaluation as ``eval.json`` holds it::

    {"knn": {"val": 0.71, "test": 0.72},
     "linear": {"val": 0.74, "test": 0.75, "weight_decay": 1e-4, "cv": {...}}, ...}

or as :func:`selfnas.info.eval_summary` condenses it (the weight decay as a top-level
``linear_weight_decay``). The dict may come from an untrusted file: a missing score is ``-``,
a score that is not a finite number is shown as its text (the renderers escape it).
"""

from __future__ import annotations

import math
from typing import Any

KNN_K = 200  # the k of selfnas.evaluation.evaluate_features, for an eval.json that does not record it
SPLITS = ("val", "test")  # held-out splits in column order; any other name follows, sorted
NOT_SCORES = ("weight_decay", "cv")  # keys of eval.json's ``linear`` that are not splits


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def percent(value: Any) -> str:
    """An accuracy in [0, 1] as ``"72.13%"``; ``None`` as ``"-"``; anything else as its text."""
    number = finite_number(value)
    if number is not None:
        return f"{100 * number:.2f}%"
    return "-" if value is None else str(value)


def split_order(names: Any) -> list[str]:
    """``val``, ``test``, then any other split name in sorted order."""
    return sorted(names, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))


def _scores(evaluation: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The ``knn`` and ``linear`` dicts; None for one that is missing, empty or not a dict."""
    knn, linear = evaluation.get("knn"), evaluation.get("linear")
    return (knn if isinstance(knn, dict) else None), (linear if isinstance(linear, dict) and linear else None)


def knn_k(evaluation: dict[str, Any]) -> int:
    """The k the kNN vote used: eval.json's ``knn_k`` (200, or the bank size when that is smaller),
    :data:`KNN_K` for an evaluation that does not record it."""
    k = evaluation.get("knn_k")
    return k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else KNN_K


def _weight_decay(evaluation: dict[str, Any], linear: dict[str, Any]) -> str:
    """``" (weight decay 0.0001)"``, or ``""`` when the evaluation does not name it."""
    wd = linear.get("weight_decay", evaluation.get("linear_weight_decay"))
    if wd is None:
        return ""
    number = finite_number(wd)
    return f" (weight decay {wd if number is None else format(number, 'g')})"


def trained_sections(evaluation: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The accuracies of a network trained with labels: ``supervised`` (from scratch) and
    ``finetune`` (few labels) sections of eval.json, labelled, when present. A section measured on
    other data than the frozen scores beside it (``selfnas eval --data``) names its data."""
    out = []
    section = evaluation.get("supervised")
    if isinstance(section, dict):
        out.append(("supervised (from scratch)", section))
    section = evaluation.get("finetune")
    if isinstance(section, dict):
        labels = section.get("labels")
        budget = labels.get("budget") if isinstance(labels, dict) else labels
        out.append((f"fine-tuned ({budget} labels)" if budget is not None else "fine-tuned", section))
    data = evaluation.get("data")
    return [(label if s.get("data", data) == data else f"{label} on {s['data']}", s) for label, s in out]


def eval_splits(evaluation: dict[str, Any]) -> list[str]:
    """The held-out splits that ``evaluation`` scores, in column order."""
    knn, linear = _scores(evaluation)
    scored = {k for k, v in (linear or {}).items() if k not in NOT_SCORES and finite_number(v) is not None}
    trained = {
        s for _, sec in trained_sections(evaluation) for s in SPLITS if finite_number(sec.get(s)) is not None
    }
    return split_order(set(knn or {}) | scored | trained)


def eval_rows(evaluation: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header ``["metric", "val", "test"]`` (the splits present, val first) and the rows
    ``kNN top-1 (k=200)`` and, when the probe ran, ``linear probe (weight decay 0.0001)``, then the
    accuracy of a classifier trained with labels (``supervised (from scratch)``, ``fine-tuned (10%
    labels)``). Beside such a row the probes' rows say ``frozen``: they measure the same backbone's
    features, not the run's own classifier."""
    knn, linear = _scores(evaluation)
    splits = eval_splits(evaluation)
    trained = trained_sections(evaluation)
    frozen = "frozen " if trained else ""
    rows = []
    if knn is not None:
        rows.append([f"{frozen}kNN top-1 (k={knn_k(evaluation)})", *(percent(knn.get(s)) for s in splits)])
    if linear is not None:
        label = f"{frozen}linear probe" + _weight_decay(evaluation, linear)
        rows.append([label, *(percent(linear.get(s)) for s in splits)])
    for label, section in trained:
        rows.append([label, *(percent(section.get(s)) for s in splits)])
    return ["metric", *splits], rows


def score_line(scores: dict[str, Any]) -> str:
    """``{"test": 0.7, "val": 0.6}`` -> ``"val 60.00%, test 70.00%"``; splits without a score are left
    out (``"-"`` when none has one)."""
    present = {k: v for k, v in scores.items() if k not in NOT_SCORES and v is not None}
    return ", ".join(f"{split} {percent(present[split])}" for split in split_order(present)) or "-"


def eval_lines(evaluation: dict[str, Any]) -> list[tuple[str, str]]:
    """The same scores as ``(name, one line)`` pairs for ``selfnas info``:
    ``("kNN", "val 60.00%, test 70.00% (k=200)")``,
    ``("linear probe", "test 75.00% (weight decay 0.0001)")``."""
    knn, linear = _scores(evaluation)
    trained = trained_sections(evaluation)
    frozen = "frozen " if trained else ""  # as in eval_rows
    lines = []
    if knn is not None:
        lines.append((f"{frozen}kNN", f"{score_line(knn)} (k={knn_k(evaluation)})"))
    if linear is not None:
        lines.append((f"{frozen}linear probe", score_line(linear) + _weight_decay(evaluation, linear)))
    for label, section in trained:
        lines.append((label, score_line({s: section.get(s) for s in SPLITS})))
    return lines
