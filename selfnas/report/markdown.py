"""The short Markdown summary of a run (``RUN/report.md``): problems, state, warnings, results, heads.

Text from files is escaped by :func:`selfnas.render.markdown.md`.
"""

from __future__ import annotations

import re

from selfnas.render.markdown import md, md_table
from selfnas.report.facts import RunFacts
from selfnas.report.pipeline_lead import backbone_lead_lines
from selfnas.report.protocols import results_table
from selfnas.report.summary import (
    chain_text,
    comparison_table,
    describe,
    describe_runs,
    found_heads,
    problems,
    progress,
    setup_line,
    verdicts,
    warnings,
)


def _run_lines(facts: RunFacts, level: int) -> list[str]:
    h = "#" * min(level + 1, 6)
    state = describe(progress(facts)) if facts.is_run else describe_runs(facts)
    found_problems = problems(facts)
    lines = ["**Problems:**", ""] + [f"- {md(p)}" for p in found_problems] + [""] if found_problems else []
    found_verdicts = verdicts(facts)
    for v in found_verdicts:  # a comparison starts with its verdicts
        lines += [f"**Verdict:** {md(v.sentence)}", ""] + md_table(v.header, v.rows) + [""]
    warning = (facts.summary or {}).get("decision_warning") if found_verdicts else None
    if warning:
        lines += [f"**Warning:** {md(str(warning))}", ""]
    lines += backbone_lead_lines(facts, h)
    lines += [f"**State:** {md(state)}"]
    setup = setup_line(facts)
    if setup:
        lines += ["", f"**Setup:** {md(setup)}"]
    found_warnings = warnings(facts)
    if found_warnings:
        lines += ["", "**Warnings:**", ""] + [f"- {md(w)}" for w in found_warnings]
    found_results = results_table(facts)
    if found_results is not None:
        lines += ["", f"{h} Results", "", md(found_results.intro), ""]
        lines += md_table(found_results.header, found_results.rows)
        lines += ["", md(" ".join(found_results.notes))] if found_results.notes else []
    found = found_heads(facts)
    if found is not None:
        source, chains = found
        lines += ["", f"{h} Found heads", "", f"{md(source)}:", ""]
        lines += [f"- {md(name)}: {md(chain_text(layers))}" for name, layers in chains.items()]
    if facts.children:
        header, rows = comparison_table(facts.children)
        lines += ["", f"{h} Runs compared", ""] + md_table(header, rows)
    for child in facts.children:
        lines += ["", f"{h} {md(child.name)}", ""] + _run_lines(child, level + 1)
    return lines


def render_markdown(facts: RunFacts) -> str:
    """The summary of ``facts`` and its sub-runs; the plots are in report.html next to it."""
    lines = [f"# selfnas report: {md(facts.name)}", ""] + _run_lines(facts, 1)
    lines += ["", "Plots, the per-epoch search table and the full config: report.html", ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
