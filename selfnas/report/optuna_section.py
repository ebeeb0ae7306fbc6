"""The report section of a sampler-based search (an Optuna study): what was tried, what won, and
whether the label-free scores it ranked by predict accuracy."""

from __future__ import annotations

import json
from typing import Any

from selfnas.io import read_jsonl
from selfnas.render.html import Html, join, png, table, tag
from selfnas.report.facts import RunFacts
from selfnas.report.summary import num, pct

PLOTS = {
    "study_history.png": "objective per trial (pruned ones at their last report) and the best so far",
    "study_importance.png": "which choices explained the objective (fANOVA)",
    "score_vs_accuracy.png": "each label-free score against the linear-probe accuracy of the same trial",
}
TOP = 10


def _study(facts: RunFacts) -> dict[str, Any] | None:
    path = facts.run.path / "study.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        facts.problems.append("study.json is unreadable; the study section is left out")
        return None
    return data if isinstance(data, dict) else None


def optuna_study(facts: RunFacts) -> Html | None:
    study = _study(facts)
    if study is None:
        return None
    counts = study.get("trials") or {}
    score = str(study.get("score", "ssl_loss"))
    kind = "a supervised proxy (uses labels)" if study.get("supervised_proxy") else "label-free"
    out = [
        tag("p", f"{study.get('strategy')} search of the {study.get('space')} space, ranked by {score} "
                 f"({kind}); trials: {', '.join(f'{v} {k.lower()}' for k, v in counts.items())}; "
                 f"best: trial {study.get('best_trial')} (objective {num(study.get('best_value'))})."),
    ]  # fmt: skip
    for name, caption in PLOTS.items():
        if (facts.run.plots / name).exists():
            out.append(png(facts.run.plots / name, caption))
    corr = study.get("correlations") or {}
    if corr:
        rows = [[k.replace("/", " vs "), num(v.get("spearman"), 3), num(v.get("kendall"), 3), v.get("n")]
                for k, v in corr.items()]  # fmt: skip
        out.append(tag("h4", "Do the label-free scores predict accuracy?"))
        out.append(table(["score vs accuracy (val)", "Spearman", "Kendall", "trials"], rows))
        out.append(tag("p", "RankMe should correlate positively with accuracy; SSL loss, alignment and "
                            "uniformity (lower is better) negatively. Accuracies are measured for this "
                            "table only and never steer the search.", class_="muted"))  # fmt: skip
    trials = [r for r in read_jsonl(facts.run.path / "trials.jsonl") if isinstance(r, dict)]
    done = sorted((r for r in trials if isinstance(r.get("value"), int | float)), key=lambda r: r["value"])
    if done:
        header = ["trial", "state", "objective", "SSL loss", "RankMe", "kNN val", "linear val", "parameters"]
        rows = []
        for r in done[:TOP]:
            s, a = r.get("scores") or {}, r.get("accuracy") or {}
            rows.append([r.get("number"), str(r.get("state", "")).lower(), num(r["value"]),
                         num(s.get("ssl_loss")), num(s.get("rankme"), 3), pct(a.get("knn")),
                         pct(a.get("linear")), f"{r.get('parameters') or 0:,}"])  # fmt: skip
        out.append(tag("h4", f"Best {min(TOP, len(done))} of {len(trials)} trials"))
        out.append(table(header, rows, alert_rows={0}))
    return join(out)
