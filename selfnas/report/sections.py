"""The sections of the HTML report, and the report itself.

Each renderer checks that its inputs exist and returns ``None`` when they do not, so one
list, :data:`SECTIONS`, serves training runs, head searches and directories of runs. A new
kind of run (a cell search, a study) adds its own :class:`Section` to the list.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from selfnas.render.html import Html, bullets, esc, join, page, png, pre, table, tag
from selfnas.report.draw import draw
from selfnas.report.facts import SSL, RunFacts
from selfnas.report.labeled_curves import curve_facts
from selfnas.report.optuna_section import optuna_study
from selfnas.report.pipeline_lead import backbone_lead
from selfnas.report.protocols import results_table
from selfnas.report.summary import (
    chain_text,
    comparison_table,
    describe_runs,
    detail,
    found_heads,
    monitor_note,
    num,
    ordered_heads,
    pct,
    problems,
    progress,
    setup_line,
    short_op,
    verdicts,
    warnings,
)


@dataclass(frozen=True)
class Section:
    """A titled part of a run's report; ``render`` returns ``None`` when the run has nothing for it."""

    key: str
    title: str
    render: Callable[[RunFacts], Html | None]


def status_block(facts: RunFacts) -> Html:
    """The run's problems first, then state badge, how far the run got, what it ran, and its
    warnings. Always rendered."""
    out = []
    found_problems = problems(facts)
    if found_problems:
        out.append(tag("div", tag("strong", "Problems") + bullets(found_problems), class_="warn"))
    if facts.is_run:
        p = progress(facts)
        out.append(tag("p", tag("span", p.state, class_=f"badge {p.state}") + " " + detail(p)))
        if p.fraction is not None:
            out.append(Html(f'<div class="bar"><div style="width:{100 * p.fraction:.1f}%"></div></div>'))
    else:
        out.append(tag("p", tag("span", "runs", class_="badge") + " " + describe_runs(facts)))
    setup = setup_line(facts)
    if setup:
        out.append(tag("p", setup, class_="muted"))
    found = warnings(facts)
    if found:
        out.append(tag("div", tag("strong", "Warnings") + bullets(found), class_="warn"))
    return join(out)


def verdict_block(facts: RunFacts) -> Html | None:
    """The comparison's verdicts first: each sentence with its differences and sizes, and the
    warning of a search that did not decide."""
    found = verdicts(facts)
    if not found:
        return None
    out = []
    for v in found:
        kind = {True: "verdict better", False: "verdict worse"}.get(v.better, "verdict")  # type: ignore[arg-type]
        out.append(tag("div", tag("p", "Verdict: " + v.sentence, class_="sentence") + table(v.header, v.rows),
                       class_=kind))  # fmt: skip
    summary = facts.summary or {}
    if summary.get("decision_warning"):
        out.append(
            tag("div", tag("strong", "Warning") + bullets([str(summary["decision_warning"])]), class_="warn")
        )
    return join(out)


def results(facts: RunFacts) -> Html | None:
    found = results_table(facts)
    if found is None:
        return None
    notes = tag("p", " ".join(found.notes), class_="muted") if found.notes else Html("")
    return tag("p", found.intro) + table(found.header, found.rows) + notes


def comparison(facts: RunFacts) -> Html | None:
    if not facts.children:
        return None
    header, rows = comparison_table(facts.children)
    return table(header, rows) + tag("p", "Each run's own report follows below.", class_="muted")


def _entropy_max(facts: RunFacts) -> float | None:
    ops = facts.section("search").get("ops")
    return math.log(len(ops)) if isinstance(ops, list) and len(ops) > 1 else None


def search_epochs_table(facts: RunFacts) -> Html:
    """Per epoch: loss, alpha entropy, parameter-free picks per head (the DARTS collapse signs)."""
    epochs = facts.search_epochs
    heads = ordered_heads(epochs[-1]["alphas"])
    top = _entropy_max(facts)
    header = ["epoch", "step", "loss", "alpha entropy"] + (["of max"] if top else [])
    header += [f"param-free {h}" for h in heads] + [f"argmax {h}" for h in heads] + ["architecture"]
    rows, alert = [], set()
    for i, r in enumerate(epochs):
        free = r.get("parameter_free") if isinstance(r.get("parameter_free"), dict) else {}
        genotype = r.get("genotype") if isinstance(r.get("genotype"), dict) else {}
        entropy = r.get("alpha_entropy")
        row: list[Any] = [r.get("epoch"), r.get("step"), num(r.get("loss")), num(entropy)]
        if top:
            row.append(f"{100 * entropy / top:.0f}%" if isinstance(entropy, int | float) else "-")
        for h in heads:
            alphas = r["alphas"].get(h)
            searched = len(alphas) if isinstance(alphas, list) else 0
            row.append(f"{free.get(h, '-')} of {searched}")
            if searched and free.get(h) == searched:
                alert.add(i)
        for h in heads:
            picks = genotype.get(h)
            row.append(" ".join(short_op(op) for op in picks) if isinstance(picks, list) else "-")
        row.append("frozen" if r.get("arch_frozen") else "updated")
        rows.append(row)
    note = (
        "Alpha entropy falling toward 0 means the search has decided; parameter-free picks taking "
        "over every layer is the DARTS collapse (highlighted)."
    )
    return table(header, rows, alert) + tag("p", note, class_="muted")


def _is_cell_search(facts: RunFacts) -> bool:
    return facts.section("search").get("space") == "cells"


def cell_search(facts: RunFacts) -> Html | None:
    """A cell search: the found normal and reduction cells as graphs (the `selfnas draw` image)."""
    if not _is_cell_search(facts) or not facts.run.genotype.exists():
        return None

    image = draw(facts.run.path, facts.run.plots / "architecture")[1]
    return png(image, "found normal and reduction cells (selfnas draw)")


def head_search(facts: RunFacts) -> Html | None:
    if _is_cell_search(facts):
        return None
    found = found_heads(facts)
    if found is None and not facts.search_epochs:
        return None
    out = []
    if found is not None:
        source, chains = found
        out.append(tag("p", source))
        if facts.genotype is not None:  # the same drawing as `selfnas draw`
            image = draw(facts.run.path, facts.run.plots / "architecture")[1]
            out.append(png(image, "backbone and found heads (selfnas draw)"))
        out.append(bullets(Html(f"{esc(name)}: {tag('code', chain_text(c))}") for name, c in chains.items()))
    if facts.search_epochs:
        for head in ordered_heads(facts.search_epochs[-1]["alphas"]):
            image = facts.run.plots / f"alphas_{head}.png"
            if image.exists():
                out.append(png(image, f"{head}: softmax(alpha) of each op per layer over the epochs"))
        out.append(search_epochs_table(facts))
    return join(out)


def curves(facts: RunFacts) -> Html | None:
    image = facts.run.plots / "curves.png"
    if not image.exists():
        return None
    if facts.protocol != SSL:
        labeled = curve_facts(facts)
        return png(image) + (tag("p", "; ".join(labeled), class_="muted") if labeled else Html(""))
    steps, knn = facts.steps, [e for e in facts.epochs if "knn_val" in e]
    facts_line = []
    if steps:
        facts_line.append(f"last logged loss {num(steps[-1].get('loss'))} at step {steps[-1].get('step')}")
        speeds = sorted(s["pairs_per_s"] for s in steps if isinstance(s.get("pairs_per_s"), int | float))
        if speeds:
            facts_line.append(f"median {speeds[len(speeds) // 2]:.0f} pairs/s")
    if knn:
        facts_line.append(f"kNN monitor on val {pct(knn[-1]['knn_val'])} after epoch {knn[-1].get('epoch')}")
        facts_line.append(monitor_note(facts))
    return png(image) + (tag("p", "; ".join(facts_line), class_="muted") if facts_line else Html(""))


SHOWN_ELSEWHERE = ("architecture", "curves.png", "alphas_", "study_", "score_vs_accuracy")


def other_plots(facts: RunFacts) -> Html | None:
    images = (
        [p for p in sorted(facts.run.plots.glob("*.png")) if not p.name.startswith(SHOWN_ELSEWHERE)]
        if facts.run.plots.is_dir()
        else []
    )
    return join(png(p, p.name) for p in images) if images else None


def _command(value: Any) -> str:
    return shlex.join(str(a) for a in value) if isinstance(value, list) else str(value)


def config_and_provenance(facts: RunFacts) -> Html | None:
    if facts.config_text is None and facts.provenance is None:
        return None
    out = []
    if facts.provenance is not None:
        rows = []
        for key, value in facts.provenance.items():
            if key == "command":
                rows.append(["command", _command(value)])
            elif isinstance(value, dict):
                rows += [[f"{key}: {k}", v] for k, v in value.items()]
            else:
                rows.append([key, value])
        out.append(table(["provenance", ""], rows))
    if facts.config_text is not None:
        out.append(tag("p", "Resolved config (config.yaml, every default filled in):"))
        out.append(pre(facts.config_text))
    return join(out)


def _size(n: float) -> str:
    units = ("B", "kB", "MB", "GB", "TB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def files(facts: RunFacts) -> Html | None:
    if not facts.is_run:
        return None
    found = [
        p
        for p in sorted([*facts.run.path.iterdir(), *facts.run.path.glob("checkpoints/*")])
        if p.is_file() and not p.name.startswith((".", "report."))
    ]
    items = [f"{p.relative_to(facts.run.path)} ({_size(p.stat().st_size)})" for p in found]
    return tag("p", ", ".join(items), class_="muted") if items else None


SECTIONS: list[Section] = [
    Section("found", "Searched and found", backbone_lead),
    Section("results", "Results", results),
    Section("runs", "Runs compared", comparison),
    Section("search", "Head search", head_search),
    Section("cells", "Cell search", cell_search),
    Section("study", "Optuna study", optuna_study),
    Section("curves", "Training curves", curves),
    Section("plots", "Other plots", other_plots),
    Section("config", "Configuration and provenance", config_and_provenance),
    Section("files", "Files", files),
]


@dataclass
class TocEntry:
    anchor: str
    title: str
    children: list[TocEntry]


def render_run(facts: RunFacts, level: int, anchor: str) -> tuple[Html, list[TocEntry]]:
    """The status block, every section that has inputs, then each sub-run, nested one level down."""
    h = f"h{min(level + 1, 6)}"
    out, toc = [status_block(facts)], []
    top = verdict_block(facts)
    if top is not None:  # a comparison starts with its verdict
        out.insert(0, top)
    for section in SECTIONS:
        body = section.render(facts)
        if body is not None:
            sid = f"{anchor}-{section.key}"
            out.append(tag("section", tag(h, section.title) + body, id=sid))
            toc.append(TocEntry(sid, section.title, []))
    for i, child in enumerate(facts.children):
        cid = f"{anchor}-{i}"
        body, child_toc = render_run(child, level + 1, cid)
        out.append(tag("section", tag(h, child.name) + body, id=cid, class_="subrun"))
        toc.append(TocEntry(cid, child.name, child_toc))
    return join(out), toc


def _toc(entries: list[TocEntry]) -> Html:
    return tag(
        "ul",
        join(
            tag("li", tag("a", e.title, href=f"#{e.anchor}") + (_toc(e.children) if e.children else ""))
            for e in entries
        ),
    )


def render_html(facts: RunFacts) -> str:
    """The whole report of ``facts`` (and its sub-runs) as one self-contained HTML document."""
    body, toc = render_run(facts, 1, "r")
    title = f"selfnas report: {facts.name}"
    heading = tag("h1", title) + tag("p", str(facts.run.path), class_="muted")
    return page(title, heading + tag("nav", _toc(toc)) + body)
