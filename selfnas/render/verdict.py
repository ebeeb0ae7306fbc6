"""The verdict of a comparison (found vs hand-crafted architecture) and the warning of a search
that did not decide: plain text and table rows that the CLI, ``report.md`` and ``report.html``
share, computed from numbers only (the standard library; the callers read the files).

The rule, stated once (README "Reading the verdict"): a found architecture is called **better**
only when it beats the hand-crafted one on the held-out test split in both the kNN and the linear
probe, on every one of at least :data:`MIN_SEEDS` paired seeds. A win on fewer seeds is reported
as a win on this run, not as evidence; a loss is always called a loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIN_SEEDS = 3
PROBES = (("knn", "kNN"), ("linear", "linear"))
#: a search has not decided when the mean alpha entropy is at least this share of its maximum ...
UNDECIDED_ENTROPY = 0.9
#: ... or when, on average over a head's layers, the top two softmax weights are this close
UNDECIDED_MARGIN = 0.05
SIZE_ROWS = (("head_params", "head parameters"), ("params", "model parameters"), ("flops", "FLOPs per image"))
DECISION_REMEDY = (
    "search longer (quickstart --search-epochs, or optim.epochs), raise search.arch_lr, or set "
    "search.beta_decay"
)


def _values(value: Any) -> list[float]:
    """A score as the list of its per-seed values: a number is one seed; non-finite is dropped."""
    items = value if isinstance(value, list | tuple) else [value]
    out = []
    for v in items:
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


@dataclass(frozen=True)
class Verdict:
    """``header`` and ``rows`` of the verdict table, the one-sentence ``sentence`` and ``better``:
    True (better by the rule), False (worse on both probes), None (anything else)."""

    header: list[str]
    rows: list[list[str]]
    sentence: str
    better: bool | None


def compare(
    found: Mapping[str, Any],
    hand: Mapping[str, Any],
    sizes: Mapping[str, Mapping[str, Any]] | None = None,
    split: str = "test",
    what: str = "heads",
    other: str = "hand-crafted",
) -> Verdict | None:
    """The verdict of ``found`` against ``hand``, each ``{"knn": {split: value or [per seed]},
    "linear": {...}}`` with the seeds in the same order on both sides (paired). ``sizes`` is
    ``{"found": {"params": n, "flops": n}, "hand": {...}}``. None when no probe has a score on
    ``split`` for both sides. ``what`` names the found thing ("heads", "backbone"), ``other`` the
    side it is set against ("hand-crafted", "random")."""
    verb = "are" if what.endswith("s") else "is"
    rows: list[list[str]] = []
    diffs: dict[str, list[float]] = {}
    for key, label in PROBES:
        f = _values((found.get(key) or {}).get(split)) if isinstance(found.get(key), Mapping) else []
        h = _values((hand.get(key) or {}).get(split)) if isinstance(hand.get(key), Mapping) else []
        n = min(len(f), len(h))
        if n == 0:
            continue
        paired = [a - b for a, b in zip(f[:n], h[:n], strict=True)]
        diffs[label] = paired
        spread = ""
        if n > 1:
            spread = f" ({min(paired) * 100:+.2f} … {max(paired) * 100:+.2f})"
        rows.append(
            [f"{label} {split}", f"{100 * _mean(f[:n]):.2f}%", f"{100 * _mean(h[:n]):.2f}%",
             f"{100 * _mean(paired):+.2f}{spread}"]
        )  # fmt: skip
    if not diffs:
        return None
    seeds = min(len(d) for d in diffs.values())
    if sizes:
        for key, label in SIZE_ROWS:
            fv, hv = (sizes.get(side, {}).get(key) for side in ("found", "hand"))
            if fv is not None and hv is not None:
                ratio = f"{fv / hv:.2f}×" if hv else "-"
                rows.append([label, _size(fv), _size(hv), ratio])
    parts = []
    for label, d in diffs.items():
        m = 100 * _mean(d)
        parts.append(
            f"{abs(m):.2f} {label} points {'better' if m > 0 else 'worse' if m < 0 else 'different'}"
        )
    seeds_text = "one seed" if seeds == 1 else f"{seeds} seeds"
    all_up = len(diffs) == len(PROBES) and all(all(x > 0 for x in d) for d in diffs.values())
    all_down = all(_mean(d) < 0 for d in diffs.values())
    if all_up and seeds >= MIN_SEEDS:
        better, conclusion = True, f"the found {what} {verb} better on every seed"
    elif all_down:
        better, conclusion = False, f"the {other} {what} {verb} better"
    elif all(_mean(d) > 0 for d in diffs.values()) and len(diffs) == len(PROBES):
        better = None
        conclusion = (
            f"a win on this run, not yet evidence of better {what} (the rule: both probes better "
            f"on every one of at least {MIN_SEEDS} seeds)"
        )
    else:
        better, conclusion = None, f"no evidence of better {what}"
    against = "" if what == "heads" else f" than the {other} {what}"
    cost = "" if what == "heads" else _cost_clause(sizes)
    sentence = (
        f"found {what} {verb} {' and '.join(parts)}{against} on {split}, {seeds_text}{cost}: {conclusion}."
    )
    short = "hand" if other == "hand-crafted" else other
    header = ["", f"found {what}", other, f"found − {short} (points)" if seeds == 1 else
              f"found − {short} (points; range over seeds)"]  # fmt: skip
    return Verdict(header=header, rows=rows, sentence=sentence, better=better)


def _cost_clause(sizes: Mapping[str, Mapping[str, Any]] | None) -> str:
    """ ", at 1.18× its parameters (212k vs 180k) and 0.9× its FLOPs (…)" from ``sizes``; empty
    when neither size is known on both sides."""
    parts = []
    for key, label in (("params", "parameters"), ("flops", "FLOPs")):
        fv, hv = ((sizes or {}).get(side, {}).get(key) for side in ("found", "hand"))
        if isinstance(fv, int | float) and isinstance(hv, int | float) and hv:
            parts.append(f"{fv / hv:.2f}× its {label} ({_size(fv)} vs {_size(hv)})")
    return f", at {' and '.join(parts)}" if parts else ""


def decision_warning(
    alphas: Mapping[str, Any], entropy: Any = None, max_entropy: float | None = None
) -> str | None:
    """The warning of a DARTS search that did not decide, from the last epoch's softmax weights
    (``{head: [[w per op] per layer]}``) and mean alpha entropy; None when it decided."""
    reasons = []
    if (
        isinstance(entropy, int | float)
        and max_entropy
        and math.isfinite(entropy)
        and entropy >= UNDECIDED_ENTROPY * max_entropy
    ):
        reasons.append(f"alpha entropy is {100 * entropy / max_entropy:.0f}% of its maximum")
    for head, layers in alphas.items():
        margins = []
        for w in layers if isinstance(layers, list) else []:
            ws = sorted(_values(w), reverse=True)
            if len(ws) >= 2:
                margins.append(ws[0] - ws[1])
        if margins and _mean(margins) < UNDECIDED_MARGIN:
            reasons.append(
                f"{head}: the top two op weights differ by {_mean(margins):.3f} on average "
                f"(below {UNDECIDED_MARGIN})"
            )
    if not reasons:
        return None
    return "The search barely decided: " + "; ".join(reasons) + f". Remedy: {DECISION_REMEDY}."


def record_decision_warning(record: Mapping[str, Any]) -> str | None:
    """:func:`decision_warning` of a search's epoch record (``alphas``, ``alpha_entropy``); the
    maximum entropy is log(ops) of the widest layer. None for a record without alphas."""
    alphas = record.get("alphas")
    if not isinstance(alphas, Mapping):
        return None
    sizes = [
        len(w)
        for layers in alphas.values()
        if isinstance(layers, list)
        for w in layers
        if isinstance(w, list)
    ]
    top = math.log(max(sizes)) if sizes and max(sizes) > 1 else None
    return decision_warning(alphas, record.get("alpha_entropy"), top)
