"""A found cell pair drawn as two graphs: inputs, intermediate nodes, output; edges labelled with ops."""

from __future__ import annotations

from typing import TYPE_CHECKING

from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.cell_ops import PARAMETER_FREE_CELL_OPS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _positions(nodes: int) -> dict[str, tuple[float, float]]:
    """c_{k-2} and c_{k-1} on the left, nodes 0..N-1 zig-zagging rightwards, c_{k} on the right."""
    pos = {"c_{k-2}": (0.0, 1.0), "c_{k-1}": (0.0, -1.0)}
    for i in range(nodes):
        pos[str(i)] = (1.6 * (i + 1), 0.9 if i % 2 == 0 else -0.9)
    pos["c_{k}"] = (1.6 * (nodes + 1), 0.0)
    return pos


def _state_name(index: int) -> str:
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, str(index - 2))


def render_cells(genotype: CellGenotype) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = _positions(genotype.nodes)
    fig, axes = plt.subplots(2, 1, figsize=(2.2 + 1.9 * genotype.nodes, 6.4))
    for ax, cell in zip(axes, ("normal", "reduce"), strict=True):
        edges = getattr(genotype, cell)
        for k, (op, src) in enumerate(edges):
            (x0, y0), (x1, y1) = pos[_state_name(src)], pos[str(k // 2)]
            colour = "#e08a2c" if op in PARAMETER_FREE_CELL_OPS else "#2b6ea8"
            ax.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.3, "shrinkA": 14, "shrinkB": 14},
            )
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2 + (0.12 if k % 2 else -0.12),
                op,
                fontsize=7.5,
                color=colour,
                ha="center",
                va="center",
                bbox={"fc": "white", "ec": "none", "pad": 0.5},
            )
        for i in range(genotype.nodes):  # every intermediate node is concatenated into the output
            (x0, y0), (x1, y1) = pos[str(i)], pos["c_{k}"]
            ax.annotate(
                "",
                xy=(x1, y1),
                xytext=(x0, y0),
                arrowprops={
                    "arrowstyle": "->",
                    "color": "#9a9a9a",
                    "lw": 0.8,
                    "ls": "--",
                    "shrinkA": 14,
                    "shrinkB": 14,
                },
            )
        for name, (x, y) in pos.items():
            fill = "#a1d99b" if name.startswith("c_") else "#f0f0f0"
            ax.text(
                x,
                y,
                f"${name}$" if name.startswith("c_") else name,
                ha="center",
                va="center",
                fontsize=10,
                bbox={
                    "boxstyle": "circle,pad=0.45" if not name.startswith("c_") else "round,pad=0.4",
                    "fc": fill,
                    "ec": "#404040",
                },
            )
        ax.set_title(f"{cell} cell", fontsize=11)
        ax.set_xlim(-0.6, 1.6 * (genotype.nodes + 1) + 0.6)
        ax.set_ylim(-1.6, 1.6)
        ax.axis("off")
    fig.suptitle("found cells (orange: parameter-free op; dashed: concatenated into the output)", fontsize=10)
    fig.tight_layout()
    return fig
