"""A study's results: the ranking table, rank correlations between scenarios, the headline.

An architecture is chosen (the best per scenario, the source's champion of the headline) by its
validation accuracy, never by test: the scenarios have no val split, so that is the linear probe's
5-fold cross-validated accuracy on the scenario's train split at the weight decay it chose. Test
accuracy is only reported (the table, the ranks, how the champion fares on the targets).

``summary.json`` holds only numbers that the probe results determine (no timings), so an interrupted and
resumed study writes the very same file as an uninterrupted one.

A study of several families (ResNet and MobileNetV2 variants) ranks all its architectures as one
population; every row of the table and of ``archs`` names its ``family`` (``None`` for the
reference ``default``), and the ranking table and the best architectures show it when there is
more than one.
"""

from __future__ import annotations

import math
from typing import Any

from selfnas.eval.correlation import kendall, spearman
from selfnas.io import atomic_write_json, atomic_write_text, write_jsonl
from selfnas.render.markdown import md, md_table
from selfnas.render.study_plots import plot_rank_scatter, plot_spearman
from selfnas.studies.cache import StudyDir
from selfnas.studies.plan import StudyPlan

SUMMARY_FORMAT = "selfnas-study-summary-1"
BEST_NOTE = "Chosen by cross-validated accuracy on train (validation), never by test; test accuracy shown."


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def validation_accuracy(cell: dict[str, Any]) -> float:
    """What a cell's architecture is chosen by: the probe's best 5-fold CV accuracy on train (the CV
    accuracy of the weight decay it chose, see :func:`selfnas.eval.linear.linear_probe`)."""
    return max(cell["cv"].values())


def ranks(scores: dict[str, float]) -> dict[str, int]:
    """Competition ranks, 1 = best: one plus the number of strictly better architectures."""
    return {a: 1 + sum(other > s for other in scores.values()) for a, s in scores.items()}


def correlation_matrix(
    accuracy: dict[str, dict[str, float]], scenarios: list[str], measure: Any
) -> list[list[float | None]]:
    """``measure`` (spearman or kendall) of the linear accuracies of every pair of scenarios, over
    the architectures probed on both; ``None`` where it is undefined (fewer than 2, or constant)."""
    out = []
    for a in scenarios:
        row = []
        for b in scenarios:
            common = [arch for arch in accuracy[a] if arch in accuracy[b]]
            xs, ys = [accuracy[a][x] for x in common], [accuracy[b][x] for x in common]
            row.append(_finite(measure(xs, ys)))
        out.append(row)
    return out


def summarize(plan: StudyPlan, probes: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """The study's results from its probe results; missing ones (an unfinished study) are left out."""
    config = plan.config
    scenarios, source = config.scenarios, config.source
    order = [a.id for a in plan.archs]
    accuracy = {s: {a: probes[a, s]["linear"] for a in order if (a, s) in probes} for s in scenarios}
    val = {s: {a: validation_accuracy(probes[a, s]) for a in order if (a, s) in probes} for s in scenarios}
    rank = {s: ranks(accuracy[s]) for s in scenarios}
    table = []
    for arch in plan.archs:
        scores = {}
        for s in scenarios:
            cell = probes.get((arch.id, s))
            if cell is not None:
                scores[s] = {
                    "linear": cell["linear"], "knn": cell["knn"], "rank": rank[s][arch.id],
                    "val": val[s][arch.id], "weight_decay": cell["weight_decay"],
                }  # fmt: skip
        table.append(
            {"arch": arch.id, "family": arch.family, "description": arch.description, "scores": scores}
        )
    # chosen on validation (ties: the earlier architecture), reported on test
    best = {s: max(val[s], key=lambda a: (val[s][a], -order.index(a))) for s in scenarios if val[s]}
    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT,
        "space": config.space,
        "spaces": config.spaces,
        "scale": config.scale,
        "method": config.train.method.name,
        "epochs": config.train.optim.epochs,
        "seed": config.train.run.seed,
        "pretrain_on": config.pretrain_on,
        "source": source,
        "scenarios": scenarios,
        "targets": config.targets,
        "archs": [
            {"id": a.id, "family": a.family, "description": a.description, "model": a.model}
            for a in plan.archs
        ],
        "complete": len(probes) == len(order) * len(scenarios),
        "table": table,
        "spearman": correlation_matrix(accuracy, scenarios, spearman),
        "kendall": correlation_matrix(accuracy, scenarios, kendall),
        "best": {s: {"arch": a, "linear": accuracy[s][a], "val": val[s][a]} for s, a in best.items()},
    }
    summary["headline"] = headline(summary, rank)
    return summary


def headline(summary: dict[str, Any], rank: dict[str, dict[str, int]]) -> dict[str, Any] | None:
    """Is the source's best architecture (chosen on validation) also the best on the targets' test
    accuracy? (Rank 1, ties included.)"""
    source, targets = summary["source"], summary["targets"]
    if source not in summary["best"]:
        return None
    champion = summary["best"][source]["arch"]
    probed = [t for t in targets if champion in rank[t]]
    also_best = [t for t in probed if rank[t][champion] == 1]
    i = summary["scenarios"].index(source)
    rhos = [summary["spearman"][i][summary["scenarios"].index(t)] for t in targets]
    rhos = [r for r in rhos if r is not None]
    return {
        "source_best": champion,
        "targets": len(probed),
        "also_best": len(also_best),
        "also_best_in": also_best,
        "ranks_on_targets": {t: rank[t][champion] for t in probed},
        "mean_rank_on_targets": sum(rank[t][champion] for t in probed) / len(probed) if probed else None,
        "archs": len(summary["archs"]),
        "mean_spearman_source_targets": sum(rhos) / len(rhos) if rhos else None,
    }


def headline_text(summary: dict[str, Any]) -> str:
    h = summary["headline"]
    if h is None:
        return "No architecture has been probed on the source scenario yet."
    if not h["targets"]:
        return f"The best architecture on {summary['source']} is {h['source_best']}; no target was probed."
    text = (
        f"The best architecture on the source {summary['source']} ({h['source_best']}) is also the best "
        f"in {h['also_best']} of {h['targets']} target scenarios; its mean rank on the targets is "
        f"{h['mean_rank_on_targets']:.1f} of {h['archs']}."
    )
    if h["mean_spearman_source_targets"] is not None:
        text += f" Mean Spearman correlation source-target: {h['mean_spearman_source_targets']:.2f}."
    return text


def write_outputs(study: StudyDir, plan: StudyPlan, final: bool = True) -> dict[str, Any]:
    """summary.json (``final`` only), results.jsonl, study.md and plots/ from the probe results so far."""
    probes = study.read_probes()
    summary = summarize(plan, probes)
    order = {(a.id, s): i for i, (a, s) in enumerate((a, s) for a in plan.archs for s in plan.scenarios)}
    write_jsonl(study.results, [probes[k] for k in sorted(probes, key=lambda k: order.get(k, len(order)))])
    plots = [plot_spearman(summary, study.plots / "spearman.png")]
    plots += [plot_rank_scatter(summary, study.plots / "ranks.png")]
    if final:
        atomic_write_json(study.summary, summary)
    atomic_write_text(study.markdown, render_markdown(summary, [p for p in plots if p is not None], study))
    return summary


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _corr(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def ranking_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the ranking table: linear accuracy (rank) per scenario, kNN on the source;
    with several families, each row's family after its id."""
    scenarios = summary["scenarios"]
    families = len(summary["spaces"]) > 1
    header = [
        "arch",
        *(["family"] if families else []),
        "architecture",
        *scenarios,
        f"kNN {summary['source']}",
    ]
    rows = []
    for row in summary["table"]:
        family = [row["family"] or "reference"] if families else []
        cells = [row["arch"], *family, row["description"]]
        for s in scenarios:
            score = row["scores"].get(s)
            cells.append("-" if score is None else f"{_pct(score['linear'])} ({score['rank']})")
        source = row["scores"].get(summary["source"])
        cells.append("-" if source is None else _pct(source["knn"]))
        rows.append(cells)
    return header, rows


def matrix_rows(summary: dict[str, Any], key: str) -> tuple[list[str], list[list[str]]]:
    scenarios = summary["scenarios"]
    return [key, *scenarios], [
        [s, *(_corr(v) for v in row)] for s, row in zip(scenarios, summary[key], strict=True)
    ]


def title(summary: dict[str, Any]) -> str:
    return f"Study: {' + '.join(summary['spaces'])} on {len(summary['scenarios'])} scenarios"


def setup_text(summary: dict[str, Any]) -> str:
    pretrained = f"the source {summary['source']}" if summary["pretrain_on"] == "source" else "each scenario"
    several = len(summary["spaces"]) > 1
    counts = {f: sum(a["family"] == f for a in summary["archs"]) for f in summary["spaces"]}
    sampled = ", ".join(f"{n} {f}" for f, n in counts.items()) if several else len(summary["archs"]) - 1
    return (
        f"{len(summary['archs'])} architectures (the default and {sampled} sampled), "
        f"{summary['method']} for {summary['epochs']:g} epochs, seed {summary['seed']}, pretrained on "
        f"{pretrained}; linear probe on frozen features (weight decay by 5-fold CV on train), "
        "accuracy on test."
    )


def _best_name(summary: dict[str, Any], best: dict[str, Any]) -> str:
    """A best architecture's id, with its family when the study has several (``resnet01 from
    resnet-variants``; the reference ``default`` has none)."""
    family = next(a.get("family") for a in summary["archs"] if a["id"] == best["arch"])
    if len(summary["spaces"]) < 2 or family is None:
        return best["arch"]
    return f"{best['arch']} from {family}"


def render_markdown(summary: dict[str, Any], plots: list[Any], study: StudyDir) -> str:
    lines = [f"# {md(title(summary))}", "", md(setup_text(summary)), ""]
    if not summary["complete"]:
        lines += ["**Unfinished:** probe results still missing are shown as -.", ""]
    lines += [f"**Headline:** {md(headline_text(summary))}", "", "## Ranking (linear accuracy, rank)", ""]
    lines += md_table(*ranking_rows(summary))
    lines += ["", "## Best architecture per scenario", "", md(BEST_NOTE), ""]
    lines += [
        f"- {md(s)}: {md(_best_name(summary, b))} ({_pct(b['linear'])})" for s, b in summary["best"].items()
    ]
    for key in ("spearman", "kendall"):
        lines += ["", f"## {key.capitalize()} rank correlation between scenarios", ""]
        lines += md_table(*matrix_rows(summary, key))
    if plots:
        lines += ["", "## Plots", ""] + [
            f"![{p.stem}]({p.relative_to(study.path).as_posix()})" for p in plots
        ]
    return "\n".join(lines) + "\n"
