"""Plots of a run directory, drawn from its metrics.jsonl (matplotlib, Agg, atomic PNGs)."""

from __future__ import annotations

import io
from pathlib import Path

from selfnas.io import atomic_write_bytes, read_jsonl
from selfnas.rundir import RunDir


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported on first use: it is slow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically, close it, and return ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_training_curves(run: RunDir) -> Path | None:
    """Loss and learning rate per step, kNN on the validation split per epoch."""
    records = read_jsonl(run.metrics)
    steps = [r for r in records if r.get("kind") == "step"]
    if not steps:
        return None
    epochs = [r for r in records if r.get("kind") == "epoch" and "knn_val" in r]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3 if epochs else 2, figsize=(12 if epochs else 8, 3.2))
    x = [r["step"] for r in steps]
    axes[0].plot(x, [r["loss"] for r in steps])
    axes[0].set(title="SSL loss", xlabel="step")
    axes[1].plot(x, [r["lr"] for r in steps], color="tab:orange")
    axes[1].set(title="learning rate", xlabel="step")
    if epochs:
        axes[2].plot(
            [r["epoch"] for r in epochs], [100 * r["knn_val"] for r in epochs], marker="o", color="tab:green"
        )
        axes[2].set(title="kNN monitor on val (%): a subset bank", xlabel="epoch")
    fig.tight_layout()
    return save_figure(fig, run.plots / "curves.png")


def plot_alpha_evolution(run: RunDir) -> list[Path]:
    """One heatmap per searched head layer: softmax(alpha) of each op over the epochs."""
    records = [r for r in read_jsonl(run.metrics) if r.get("kind") == "epoch" and "alphas" in r]
    if not records:
        return []
    import yaml

    config = yaml.safe_load(run.config.read_text())
    if config["search"].get("space", "heads") != "heads":
        return []  # per-layer heatmaps are for the head chain; cell alphas stay in metrics.jsonl
    ops = config["search"]["ops"]
    paths = []
    for head in records[-1]["alphas"]:
        layers = len(records[-1]["alphas"][head])
        plt = pyplot()
        fig, axes = plt.subplots(1, layers, figsize=(2.2 * layers + 1.5, 3.4), sharey=True, squeeze=False)
        values = [w for r in records for row in r["alphas"][head] for w in row]
        lo, hi = min(values), max(values)  # one scale for the head, stretched so small moves show
        for layer in range(layers):
            ax = axes[0][layer]
            grid = [[r["alphas"][head][layer][i] for r in records] for i in range(len(ops))]  # ops x epochs
            image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-6))
            ax.set_title(f"layer {layer + 1}")
            ax.set_xlabel("epoch")
            ax.set_xticks(range(len(records)), [str(r["epoch"]) for r in records], fontsize=7)
            if layer == 0:
                ax.set_yticks(range(len(ops)), ops, fontsize=8)
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="softmax(alpha)")
        fig.suptitle(f"{head}: architecture weights per layer", y=1.04)
        paths.append(save_figure(fig, run.plots / f"alphas_{head}.png"))
    return paths


def refresh_plots(run: RunDir) -> None:
    """Redraw the curves and alpha heatmaps that are missing or older than metrics.jsonl.

    Runs that stopped early (interrupted, failed, still running) never drew their plots;
    a report draws them from what metrics.jsonl holds so far.
    """
    if not run.metrics.exists():
        return
    newest = run.metrics.stat().st_mtime

    def stale(name: str) -> bool:
        path = run.plots / name
        return not path.exists() or path.stat().st_mtime < newest

    if stale("curves.png"):
        plot_training_curves(run)
    searched = [r for r in read_jsonl(run.metrics) if r.get("kind") == "epoch" and "alphas" in r]
    heads = searched[-1]["alphas"] if searched else {}
    if any(stale(f"alphas_{head}.png") for head in heads) and _names_search_ops(run):
        plot_alpha_evolution(run)


def _names_search_ops(run: RunDir) -> bool:
    """Whether the run's config lists the ops of its search space (the heatmaps' rows)."""
    import yaml

    try:
        config = yaml.safe_load(run.config.read_text())
    except (OSError, yaml.YAMLError):
        return False
    search = config.get("search") if isinstance(config, dict) else None
    return isinstance(search, dict) and isinstance(search.get("ops"), list)
