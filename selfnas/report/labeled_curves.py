"""Training curves of a run trained with labels (supervised from scratch, fine-tuning).

Their metrics.jsonl logs the training loss per step and, per epoch, the loss and the validation
accuracy (``val_acc``; ``selected`` on the epochs whose weights fine-tuning kept, the best val so
far). The SSL curves (:func:`selfnas.render.plots.plot_training_curves`) call the loss "SSL loss"
and plot the kNN monitor, which these runs do not have; this plot draws what they log, into the
same ``plots/curves.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfnas.io import read_jsonl
from selfnas.render.plots import pyplot, save_figure
from selfnas.render.tables import finite_number, percent
from selfnas.report.facts import FINETUNE, RunFacts
from selfnas.rundir import RunDir


def _points(records: list[dict[str, Any]], x: str, y: str) -> list[tuple[float, float]]:
    """``(record[x], record[y])`` for the records where both are finite numbers (the file is untrusted)."""
    pairs = [(finite_number(r.get(x)), finite_number(r.get(y))) for r in records]
    return [(a, b) for a, b in pairs if a is not None and b is not None]


def _kept(epochs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The epoch whose weights fine-tuning kept: the last one marked ``selected``."""
    selected = [
        r for r in epochs if r.get("selected") is True and finite_number(r.get("val_acc")) is not None
    ]
    return selected[-1] if selected else None


def plot_labeled_curves(run: RunDir) -> Path | None:
    """``plots/curves.png``: the training loss per step (epoch ends marked) and the validation
    accuracy per epoch (the kept epoch starred); None when metrics.jsonl logs no loss yet."""
    records = read_jsonl(run.metrics)
    steps = _points([r for r in records if r.get("kind") == "step"], "step", "loss")
    epochs = [r for r in records if r.get("kind") == "epoch"]
    ends = _points(epochs, "step", "loss")
    if not steps and not ends:
        return None
    val = _points(epochs, "epoch", "val_acc")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(8 if val else 4.5, 3.2), squeeze=False)
    loss = axes[0][0]
    if steps:
        loss.plot(*zip(*steps, strict=True), label="logged steps")
    if ends:
        loss.plot(*zip(*ends, strict=True), "o", color="tab:blue", label="epoch ends")
    loss.set(title="training loss (cross-entropy)", xlabel="step")
    loss.legend(fontsize=7)
    if val:
        acc = axes[0][1]
        acc.plot([e for e, _ in val], [100 * a for _, a in val], marker="o", color="tab:green")
        kept = _kept(epochs)
        if kept is not None:
            acc.plot([kept["epoch"]], [100 * kept["val_acc"]], "*", ms=14, color="tab:red", label="kept")
            acc.legend(fontsize=7)
        acc.set(title="val accuracy (%)", xlabel="epoch")
    fig.tight_layout()
    return save_figure(fig, run.plots / "curves.png")


def refresh_labeled_curves(run: RunDir) -> None:
    """Redraw ``plots/curves.png`` when it is missing or older than metrics.jsonl (the supervised
    trainer draws no plots itself, and a report may come while it runs)."""
    if not run.metrics.exists():
        return
    image = run.plots / "curves.png"
    if not image.exists() or image.stat().st_mtime < run.metrics.stat().st_mtime:
        plot_labeled_curves(run)


def curve_facts(facts: RunFacts) -> list[str]:
    """``["last logged loss 1.39 at step 8", "val accuracy 17.65% after epoch 2", ...]``: the
    numbers under the curves of a run trained with labels."""
    steps, epochs = facts.steps, facts.epochs
    out = []
    last = finite_number(steps[-1].get("loss")) if steps else None
    if last is not None:
        out.append(f"last logged loss {last:.4g} at step {steps[-1].get('step')}")
    if steps:
        speeds = sorted(s["images_per_s"] for s in steps if finite_number(s.get("images_per_s")) is not None)
        if speeds:
            out.append(f"median {speeds[len(speeds) // 2]:.0f} images/s")
    val = [e for e in epochs if finite_number(e.get("val_acc")) is not None]
    if val:
        out.append(f"val accuracy {percent(val[-1]['val_acc'])} after epoch {val[-1].get('epoch')}")
    kept = _kept(epochs)
    if kept is not None and facts.protocol == FINETUNE:
        out.append(f"epoch {kept.get('epoch')} kept (best val, {percent(kept['val_acc'])})")
    return out
