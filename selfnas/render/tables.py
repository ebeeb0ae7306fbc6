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

KNN_K = 200  # the k of selfnas.evaluation.evaluate_features, which eval.json does not record
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


def _weight_decay(evaluation: dict[str, Any], linear: dict[str, Any]) -> str:
    """``" (weight decay 0.0001)"``, or ``""`` when the evaluation does not name it."""
    wd = linear.get("weight_decay", evaluation.get("linear_weight_decay"))
    if wd is None:
        return ""
    number = finite_number(wd)
    return f" (weight decay {wd if number is None else format(number, 'g')})"


def _trained(evaluation: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The accuracies of a network trained with labels: ``supervised`` (from scratch) and
    ``finetune`` (few labels) sections of eval.json, labelled, when present."""
    out = []
    section = evaluation.get("supervised")
    if isinstance(section, dict):
        out.append(("supervised (from scratch)", section))
    section = evaluation.get("finetune")
    if isinstance(section, dict):
        labels = section.get("labels")
        budget = labels.get("budget") if isinstance(labels, dict) else labels
        out.append((f"fine-tuned ({budget} labels)" if budget is not None else "fine-tuned", section))
    return out


def eval_splits(evaluation: dict[str, Any]) -> list[str]:
    """The held-out splits that ``evaluation`` scores, in column order."""
    knn, linear = _scores(evaluation)
    scored = {k for k, v in (linear or {}).items() if k not in NOT_SCORES and finite_number(v) is not None}
    trained = {s for _, sec in _trained(evaluation) for s in SPLITS if finite_number(sec.get(s)) is not None}
    return split_order(set(knn or {}) | scored | trained)


def eval_rows(evaluation: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header ``["metric", "val", "test"]`` (the splits present, val first) and the rows
    ``kNN top-1 (k=200)`` and, when the probe ran, ``linear probe (weight decay 0.0001)``."""
    knn, linear = _scores(evaluation)
    splits = eval_splits(evaluation)
    rows = []
    if knn is not None:
        rows.append([f"kNN top-1 (k={KNN_K})", *(percent(knn.get(s)) for s in splits)])
    if linear is not None:
        label = "linear probe" + _weight_decay(evaluation, linear)
        rows.append([label, *(percent(linear.get(s)) for s in splits)])
    for label, section in _trained(evaluation):
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
    lines = []
    if knn is not None:
        lines.append(("kNN", f"{score_line(knn)} (k={KNN_K})"))
    if linear is not None:
        lines.append(("linear probe", score_line(linear) + _weight_decay(evaluation, linear)))
    for label, section in _trained(evaluation):
        lines.append((label, score_line({s: section.get(s) for s in SPLITS})))
    return lines
