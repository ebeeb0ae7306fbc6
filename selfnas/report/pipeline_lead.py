"""The lead of a backbone pipeline's report (``selfnas quickstart``): what was searched and what was
found — the found cell's drawing, the three-way table (found, hand-crafted default at equal width,
random architecture of the space), the search's trials and the cost of each stage.

The tables are built once here and rendered both as HTML (``report.html``) and Markdown
(``report.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfnas.io import read_jsonl
from selfnas.render.html import Html, join, png, table, tag
from selfnas.render.markdown import md, md_table
from selfnas.render.tables import percent
from selfnas.report.facts import RunFacts

SIDES = (
    ("found", "found (searched)"),
    ("default", "hand-crafted, equal width"),
    ("random", "random of the space"),
)
STAGES = ("search", "found", "default", "random")


def is_backbone_pipeline(facts: RunFacts) -> bool:
    summary = facts.summary or {}
    return all(isinstance(summary.get(side), dict) for side, _ in SIDES)


def _size(n: Any) -> str:
    if not isinstance(n, int | float):
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def three_way(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per side: kNN and linear on val and test, feature width, parameters, FLOPs per image."""
    header = ["backbone", "kNN val", "kNN test", "linear val", "linear test", "features", "params", "FLOPs"]
    rows = []
    for side, label in SIDES:
        row = summary[side]
        knn, linear = row.get("knn") or {}, row.get("linear") or {}
        accuracies = [percent(p.get(s)) for p in (knn, linear) for s in ("val", "test")]
        sizes = [str(row.get("feature_dim") or "-"), _size(row.get("params")), _size(row.get("flops"))]
        rows.append([label, *accuracies, *sizes])
    return header, rows


def _score(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def trials(search_dir: Path, score_name: Any) -> tuple[list[str], list[list[str]]] | None:
    """The search's trials in order: state, epochs reached, screening score at initialisation, the
    label-free score it ranked by, and the linear-probe accuracy where labels were measured."""
    rows_in = [r for r in read_jsonl(search_dir / "trials.jsonl") if isinstance(r, dict)]
    if not rows_in:
        return None
    header = ["trial", "state", "epochs", "screen score", str(score_name), "linear val (labels)",
              "backbone params", "seconds"]  # fmt: skip
    rows = []
    for r in sorted(rows_in, key=lambda r: r.get("number", 0)):
        steps = r.get("intermediate") if isinstance(r.get("intermediate"), dict) else {}
        score = r["scores"].get(score_name) if isinstance(r.get("scores"), dict) else None
        accuracy = (r.get("accuracy") or {}).get("linear") if isinstance(r.get("accuracy"), dict) else None
        params = r.get("parameters")
        size = f"{params:,}" if isinstance(params, int) else "-"
        rows.append([str(r.get("number")), str(r.get("state", "")).lower(), str(len(steps) or "-"),
                     _score(r.get("screen_score")), _score(score), percent(accuracy), size,
                     _score(r.get("duration_s"))])  # fmt: skip
    return header, rows


def costs(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Wall-clock seconds of each stage (summed over resumes), as the pipeline measured them."""
    spent = summary.get("costs")
    if not isinstance(spent, dict) or not spent:
        return None
    rows = [[stage, f"{spent[stage]:.0f} s"] for stage in STAGES if isinstance(spent.get(stage), int | float)]
    total = sum(v for v in spent.values() if isinstance(v, int | float))
    return ["stage", "wall clock"], rows + [["all", f"{total / 60:.1f} min"]]


def _intro(summary: dict[str, Any]) -> str:
    search = summary.get("search") or {}
    screen = search.get("screen") or {}
    counts = search.get("trials") or {}
    tried = ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v)
    screened = f"{screen.get('candidates')} candidates scored at initialisation, then " if screen else ""
    return (
        f"Searched the {summary.get('space')} space without labels ({summary.get('method')} on "
        f"{summary.get('data')}): {screened}trials ranked by {search.get('score')} ({tried}); the find, the "
        f"hand-crafted default ({summary.get('default_rule')}) and a seeded random architecture of the "
        f"space were then trained alike and probed with labels."
    )


def _drawing(facts: RunFacts) -> Path | None:
    from selfnas.report.draw import draw

    search = facts.run.path / "search"
    if not (search / "genotype.json").exists():
        return None
    try:
        return draw(search, search / "plots" / "architecture")[1]
    except Exception as err:  # a drawing never stops a report
        facts.problems.append(f"the found cell could not be drawn: {err}")
        return None


def backbone_lead(facts: RunFacts) -> Html | None:
    """The HTML lead section of a backbone pipeline, or None for anything else."""
    if not is_backbone_pipeline(facts):
        return None
    summary = facts.summary or {}
    out = [tag("p", _intro(summary))]
    image = _drawing(facts)
    if image is not None:
        out.append(png(image, "the found normal and reduction cells (selfnas draw)"))
    out.append(table(*three_way(summary)))
    found_trials = trials(facts.run.path / "search", (summary.get("search") or {}).get("score"))
    if found_trials is not None:
        out.append(tag("h4", "The search's trials"))
        out.append(table(*found_trials))
    spent = costs(summary)
    if spent is not None:
        out.append(tag("h4", "Cost of each stage"))
        out.append(table(*spent))
    return join(out)


def backbone_lead_lines(facts: RunFacts, h: str) -> list[str]:
    """The Markdown lead of a backbone pipeline, [] for anything else."""
    if not is_backbone_pipeline(facts):
        return []
    summary = facts.summary or {}
    lines = [f"{h} Searched and found", "", md(_intro(summary)), ""] + md_table(*three_way(summary))
    found_trials = trials(facts.run.path / "search", (summary.get("search") or {}).get("score"))
    if found_trials is not None:
        lines += ["", "The search's trials:", ""] + md_table(*found_trials)
    spent = costs(summary)
    if spent is not None:
        lines += ["", "Cost of each stage:", ""] + md_table(*spent)
    return lines + [""]
