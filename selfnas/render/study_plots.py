"""The study's plots: the Spearman matrix between scenarios, and source rank vs target rank."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from selfnas.render.plots import pyplot, save_figure

LABELLED = 15  # name the points of a scatter with at most this many architectures


def plot_spearman(summary: dict[str, Any], path: Path) -> Path:
    """Heatmap of the scenarios x scenarios Spearman matrix, values written in the cells."""
    scenarios, matrix = summary["scenarios"], summary["spearman"]
    n = len(scenarios)
    grid = [[math.nan if v is None else v for v in row] for row in matrix]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.1 * n + 2.5, 0.9 * n + 1.8))
    image = ax.imshow(grid, cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xticks(range(n), scenarios, rotation=40, ha="right")
    ax.set_yticks(range(n), scenarios)
    for i in range(n):
        for j in range(n):
            value = matrix[i][j]
            color = "white" if value is not None and abs(value) > 0.6 else "black"
            text = "-" if value is None else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Spearman rho")
    ax.set_title(f"rank correlation of linear accuracy over {len(summary['archs'])} architectures")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rank_scatter(summary: dict[str, Any], path: Path) -> Path | None:
    """One panel per target: each architecture's rank on the source (x) against its rank on the
    target (y); the source's best and the default architecture are marked."""
    source, targets = summary["source"], summary["targets"]
    if not targets:
        return None
    rank = {
        s: {r["arch"]: r["scores"][s]["rank"] for r in summary["table"] if s in r["scores"]}
        for s in summary["scenarios"]
    }
    best = summary["best"].get(source, {}).get("arch")
    n_archs = len(summary["archs"])
    cols = min(3, len(targets))
    rows = math.ceil(len(targets) / cols)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    for k, target in enumerate(targets):
        ax = axes[k // cols][k % cols]
        common = [a for a in rank[source] if a in rank[target]]
        ax.plot([1, n_archs], [1, n_archs], color="0.8", lw=1, zorder=0)
        ax.scatter(
            [rank[source][a] for a in common], [rank[target][a] for a in common], s=22, color="tab:blue"
        )
        marked = {
            "default": ("tab:green", "default (reference)"),
            best: ("tab:red", f"{best} (best on source)"),
        }
        for arch, (color, label) in marked.items():
            if arch in common:
                ax.scatter(rank[source][arch], rank[target][arch], s=60, color=color, label=label, zorder=3)
        if n_archs <= LABELLED:
            at: dict[tuple[int, int], list[str]] = {}
            for arch in common:  # tied architectures share a point and a label
                at.setdefault((rank[source][arch], rank[target][arch]), []).append(arch)
            for xy, names in at.items():
                ax.annotate(", ".join(names), xy, xytext=(4, 3), textcoords="offset points", fontsize=7)
        i, j = summary["scenarios"].index(source), summary["scenarios"].index(target)
        rho = summary["spearman"][i][j]
        ax.set(xlabel=f"rank on {source}", ylabel=f"rank on {target}",
               title=f"{target} (rho {'-' if rho is None else f'{rho:.2f}'})")  # fmt: skip
        ax.set_xlim(0.5, n_archs + 0.5)
        ax.set_ylim(n_archs + 0.5, 0.5)  # rank 1 at the top
        ax.legend(fontsize=7, loc="lower right")
    for k in range(len(targets), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(f"rank on the source {source} vs rank on each target (1 = best)", y=1.02)
    fig.tight_layout()
    return save_figure(fig, path)
