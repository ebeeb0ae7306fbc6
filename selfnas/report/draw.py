"""Diagrams of found architectures as SVG and PNG (matplotlib, Agg, atomic writes).

A diagram is a list of :class:`Chain` rows of boxes joined by arrows. What goes in the
rows comes from one function per genotype space (dispatch on ``genotype["space"]``, see
:data:`GENOTYPE_CHAINS`) and, for a run directory, from its config: the backbone as a
stage diagram, then the heads (found ones when the run has a ``genotype.json``).
"""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfnas.build import genotype_file, load_run_config, open_run, run_heads
from selfnas.errors import GenotypeError
from selfnas.io import atomic_write_bytes
from selfnas.models.backbones import BACKBONES
from selfnas.models.genotype import HeadGenotype, load_genotype
from selfnas.models.head_ops import PARAMETER_FREE_HEAD_OPS
from selfnas.models.heads import HeadSpec
from selfnas.report.draw_cells import render_cells
from selfnas.rundir import RunDir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: box face colours per kind of box
COLOURS = {
    "op": "#9ecae1",  # an op with parameters
    "free": "#fdae6b",  # a parameter-free op
    "stage": "#a1d99b",  # a backbone stage
    "io": "#e0e0e0",  # inputs and outputs
}
LEGEND = {"op": "op with parameters", "free": "parameter-free op", "stage": "backbone stage"}


@dataclass(frozen=True)
class Box:
    """One box: ``label`` in bold, ``detail`` (a width, a shape) under it, coloured by ``kind``."""

    label: str
    detail: str
    kind: str


@dataclass(frozen=True)
class Chain:
    """A titled row of boxes, drawn left to right with an arrow between neighbours."""

    title: str
    boxes: tuple[Box, ...]


def head_chain(name: str, spec: HeadSpec, in_label: str) -> Chain:
    boxes = [Box("input", in_label, "io")]
    for layer in spec.layers:
        kind = "free" if layer.op in PARAMETER_FREE_HEAD_OPS else "op"
        boxes.append(Box(layer.op, f"dim {layer.dim}", kind))
    return Chain(name, tuple(boxes))


def heads_chains(genotype: HeadGenotype) -> list[Chain]:
    """Projector (and predictor) chains of a heads genotype."""
    chains = [head_chain("projector", genotype.projector, "backbone features")]
    if genotype.predictor is not None:
        chains.append(head_chain("predictor", genotype.predictor, f"projection {genotype.projector.out_dim}"))
    return chains


#: genotype space -> the rows that draw it; a new space adds its function here
GENOTYPE_CHAINS: dict[str, Callable[[Any], list[Chain]]] = {"heads": heads_chains}


def genotype_chains(genotype: Any) -> list[Chain]:
    draw_space = GENOTYPE_CHAINS.get(genotype.space)
    if draw_space is None:
        raise GenotypeError(f"no drawing for genotype space {genotype.space!r} yet")
    return draw_space(genotype)


def backbone_chain(name: str, kwargs: dict[str, Any], data: str) -> Chain:
    """``resnet_small`` as stem, stages and pooling (from its kwargs and defaults); others as one box."""
    if name != "resnet_small":
        return Chain("backbone", (Box("image", data, "io"), Box(name, "", "stage")))
    params = inspect.signature(BACKBONES.get(name)).parameters
    width = kwargs.get("width", params["width"].default)
    depths = list(kwargs.get("depths", params["depths"].default))
    boxes = [Box("image", data, "io"), Box("stem conv3x3", f"{width} ch", "stage")]
    for i, depth in enumerate(depths):
        stride = ", /2" if i > 0 else ""
        boxes.append(Box(f"stage {i + 1}", f"{depth} x block, {width * 2**i} ch{stride}", "stage"))
    boxes.append(Box("avg pool", f"dim {width * 2 ** (len(depths) - 1)}", "io"))
    return Chain("backbone", tuple(boxes))


def run_chains(run_dir: Path) -> tuple[str, list[Chain]]:
    """A run's backbone and heads: found heads when it has a genotype, else its configured ones."""
    run = open_run(run_dir)
    config = load_run_config(run)
    if config.search is not None and config.search.space != "heads" and genotype_file(run) is not None:
        return diagram(genotype_file(run))  # the found cells, not the supernet's placeholder backbone
    heads = run_heads(run)
    backbone = backbone_chain(config.model.backbone, config.model.backbone_kwargs, config.data.name)
    title = f"{config.method.name} on {config.data.name}"
    if genotype_file(run) is not None:
        title += " (found heads)"
    elif heads is None:
        title += " (search unfinished: no genotype.json yet)"
    return title, [backbone, *(genotype_chains(heads) if heads is not None else [])]


def diagram(target: str | Path) -> tuple[str, list[Chain]]:
    """(title, rows) of a genotype file or a run directory."""
    path = Path(target)
    if not path.is_file():
        return run_chains(path)
    genotype = load_genotype(path)
    method = f" ({genotype.method})" if getattr(genotype, "method", None) else ""
    return f"{genotype.space} genotype{method}", genotype_chains(genotype)


BOX_W, BOX_H, GAP_X, ROW_H = 2.2, 0.9, 0.6, 1.9


def render(title: str, chains: list[Chain]) -> Figure:
    """A matplotlib figure of the rows, one below the other, with a legend of box colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, Patch

    longest = max(len(c.boxes) for c in chains)
    width = 0.6 + longest * (BOX_W + GAP_X) - GAP_X
    height = 0.8 + len(chains) * ROW_H
    fig, ax = plt.subplots(figsize=(width, height + 0.6))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    for row, chain in enumerate(chains):
        y = height - 0.6 - row * ROW_H - BOX_H
        ax.text(0.1, y + BOX_H + 0.25, chain.title, fontsize=11, fontweight="bold", va="bottom")
        for i, box in enumerate(chain.boxes):
            x = 0.3 + i * (BOX_W + GAP_X)
            ax.add_patch(
                FancyBboxPatch(
                    (x, y), BOX_W, BOX_H, boxstyle="round,pad=0.02,rounding_size=0.12",
                    facecolor=COLOURS[box.kind], edgecolor="#404040", linewidth=1.0,
                )
            )  # fmt: skip
            ax.text(x + BOX_W / 2, y + BOX_H * 0.64, box.label, ha="center", va="center", fontsize=8.5)
            ax.text(x + BOX_W / 2, y + BOX_H * 0.28, box.detail, ha="center", va="center", fontsize=7.5)
            if i > 0:
                ax.annotate(
                    "", xy=(x, y + BOX_H / 2), xytext=(x - GAP_X, y + BOX_H / 2),
                    arrowprops={"arrowstyle": "->", "color": "#404040", "lw": 1.2},
                )  # fmt: skip
    kinds = [k for k in LEGEND if any(b.kind == k for c in chains for b in c.boxes)]
    ax.legend(
        handles=[Patch(facecolor=COLOURS[k], edgecolor="#404040", label=LEGEND[k]) for k in kinds],
        loc="lower right", fontsize=8, frameon=False, ncol=len(kinds),
    )  # fmt: skip
    ax.set_title(title, fontsize=12)
    return fig


def _cell_genotype(target: Path) -> Any:
    """The cell genotype of a genotype file or of a run directory's genotype.json, else None."""
    path = RunDir(target).genotype if target.is_dir() else target
    if not (path.is_file() and path.suffix == ".json"):
        return None
    genotype = load_genotype(path)
    return genotype if genotype.space == "cells" else None


def draw(target: str | Path, out_prefix: str | Path) -> list[Path]:
    """Draw a genotype file or a run directory to ``OUT_PREFIX.svg`` and ``OUT_PREFIX.png``."""
    import matplotlib
    import matplotlib.pyplot as plt

    cells = _cell_genotype(Path(target))
    if cells is not None:
        fig = render_cells(cells)
    else:
        fig = render(*diagram(target))
    paths = []
    prefix = Path(out_prefix)
    try:
        for fmt in ("svg", "png"):
            buf = io.BytesIO()
            # svg.fonttype none: text stays <text> (searchable, small) instead of glyph paths
            with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "selfnas"}):
                fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight", metadata={"Date": None})
            paths.append(atomic_write_bytes(prefix.with_name(f"{prefix.name}.{fmt}"), buf.getvalue()))
    finally:
        plt.close(fig)
    return paths
