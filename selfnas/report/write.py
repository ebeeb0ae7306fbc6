"""``write_report``: RUN/report.html (one self-contained file) and RUN/report.md, written atomically."""

from __future__ import annotations

from pathlib import Path

from selfnas.errors import RunDirError
from selfnas.io import atomic_write_text
from selfnas.render.plots import refresh_plots
from selfnas.report.facts import SSL, load_facts
from selfnas.report.labeled_curves import refresh_labeled_curves
from selfnas.report.markdown import render_markdown
from selfnas.report.sections import render_html
from selfnas.report.study_page import is_study, write_study_report
from selfnas.tracking import log_artifacts


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Report on a run directory, or on a directory of runs; returns (report.html, report.md).

    Works for finished, running, interrupted and failed runs alike; plots that are missing
    or older than metrics.jsonl are redrawn into each run's plots/ first. Raises
    :class:`selfnas.errors.RunDirError` when ``run_dir`` is not a run and holds none.
    A study directory (``selfnas study``) gets its own page: ranking, correlations, plots.
    """

    if is_study(run_dir):
        return write_study_report(run_dir)
    facts = load_facts(run_dir)
    for run in facts.walk():
        try:
            if run.is_run and run.protocol == SSL:
                refresh_plots(run.run)
            elif run.is_run:  # trained with labels: its loss and val accuracy, no kNN monitor
                refresh_labeled_curves(run.run)
        except RunDirError as exc:  # a damaged metrics.jsonl: listed among the problems already
            run.problems.append(f"curves not redrawn: {exc}")
    path = facts.run.path
    written = (
        atomic_write_text(path / "report.html", render_html(facts)),
        atomic_write_text(path / "report.md", render_markdown(facts)),
    )
    log_artifacts(path, [written[0], path / "plots" / "architecture.png"])  # to the run's trackers
    return written
