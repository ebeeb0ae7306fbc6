"""``selfnas report`` on a study directory: study.md and its plots, as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

from selfnas.io import atomic_write_text
from selfnas.render.html import bullets, join, page, png, table, tag
from selfnas.studies.cache import StudyDir
from selfnas.studies.outputs import headline_text, matrix_rows, ranking_rows, setup_text, title, write_outputs
from selfnas.studies.plan import read_plan


def is_study(path: str | Path) -> bool:
    return (Path(path) / "plan.json").is_file()


def write_study_report(path: str | Path) -> tuple[Path, Path]:
    """Redraw the outputs from the cells so far (finished or not); returns (report.html, study.md)."""
    study = StudyDir(path)
    plan = read_plan(study.path)
    assert plan is not None
    summary = write_outputs(study, plan, final=False)
    parts = [
        tag("h1", title(summary)),
        tag("p", str(study.path), class_="muted"),
        tag("p", setup_text(summary)),
    ]
    if not summary["complete"]:
        parts.append(tag("div", "Unfinished: the cells still missing are shown as -.", class_="warn"))
    parts.append(tag("p", tag("strong", headline_text(summary))))
    parts.append(tag("h2", "Ranking (linear accuracy, rank per scenario)") + table(*ranking_rows(summary)))
    best = [f"{s}: {b['arch']} ({100 * b['linear']:.2f}%)" for s, b in summary["best"].items()]
    parts.append(tag("h2", "Best architecture per scenario") + bullets(best))
    parts.append(tag("h2", "Rank correlation between scenarios"))
    if (study.plots / "spearman.png").exists():
        parts.append(png(study.plots / "spearman.png", "Spearman rho of the linear accuracies"))
    for key in ("spearman", "kendall"):
        parts.append(tag("h3", key.capitalize()) + table(*matrix_rows(summary, key)))
    if (study.plots / "ranks.png").exists():
        parts.append(tag("h2", "Source rank vs target rank") + png(study.plots / "ranks.png"))
    states = []
    for unit in plan.units():
        status = study.run(unit).read_status()
        state = status.get("state", "not started")
        if state != "finished" and status.get("total_steps"):
            state += f" (step {status.get('step', 0)} of {status['total_steps']})"
        states.append([unit.key, unit.arch.description, unit.data, state])
    parts.append(tag("h2", "Pretrainings") + table(["run", "architecture", "pretrained on", "state"], states))
    html = atomic_write_text(study.path / "report.html", page(title(summary), join(parts)))
    return html, study.markdown
