"""Found heads drawn as inline SVG: one row of op boxes per head, arrows between them.

Boxes are coloured by kind: ops with parameters, parameter-free ops (identity and pooling,
the ops DARTS collapses toward) and the fixed layers that the search does not choose.
Labels use a monospace font so that box widths can be computed from the text length.
"""

from __future__ import annotations

from selfnas.report.html import Html, esc
from selfnas.report.summary import Layer

FILL = {
    "input": ("#ffffff", "#9aa5b1"),
    "param": ("#dbeafe", "#2563eb"),
    "free": ("#fef3c7", "#d97706"),
    "fixed": ("#eef2f6", "#616e7c"),
}
LEGEND = (
    ("param", "op with parameters"),
    ("free", "parameter-free op"),
    ("fixed", "fixed layer (not searched)"),
)

CHAR_W = 7.3  # px per character of 12 px monospace
BOX_H, ROW_H, GAP, PAD = 40, 60, 30, 12


def _box(x: float, y: float, w: float, kind: str, top: str, bottom: str) -> str:
    fill, stroke = FILL[kind]
    dash = ' stroke-dasharray="4 3"' if kind == "fixed" else ""
    cx = x + w / 2
    top_y = y + 17 if bottom else y + 24  # a box without a second line centres its label
    return (
        f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BOX_H}" rx="6" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="1.5"{dash}/>'
        f'<text x="{cx:.1f}" y="{top_y}" text-anchor="middle" font-size="12">{esc(top)}</text>'
        f'<text x="{cx:.1f}" y="{y + 32}" text-anchor="middle" font-size="10.5" fill="#616e7c">'
        f"{esc(bottom)}</text>"
    )


def _arrow(x0: float, x1: float, y: float) -> str:
    return (
        f'<line x1="{x0:.1f}" y1="{y}" x2="{x1 - 6:.1f}" y2="{y}" stroke="#7b8794" stroke-width="1.5"/>'
        f'<polygon points="{x1:.1f},{y} {x1 - 7:.1f},{y - 4} {x1 - 7:.1f},{y + 4}" fill="#7b8794"/>'
    )


def heads_svg(chains: dict[str, list[Layer]]) -> Html:
    """One row per head: ``name: [input] -> [op, dim] -> ...``."""
    label_w = max(len(name) for name in chains) * CHAR_W + 2 * PAD
    parts, width = [], 0.0
    for row, (name, layers) in enumerate(chains.items()):
        y = PAD + row * ROW_H
        mid = y + BOX_H / 2
        parts.append(f'<text x="{PAD}" y="{mid + 4}" font-size="13" font-weight="bold">{esc(name)}</text>')
        boxes = [("input", "backbone", "features")]
        boxes += [(layer.kind, layer.op, "" if layer.dim is None else f"dim {layer.dim}") for layer in layers]
        x = label_w
        for i, (kind, top, bottom) in enumerate(boxes):
            w = max(len(top), len(bottom)) * CHAR_W + 2 * PAD
            if i:
                parts.append(_arrow(x - GAP, x, mid))
            parts.append(_box(x, y, w, kind, top, bottom))
            x += w + GAP
        width = max(width, x - GAP + PAD)
    height = PAD * 2 + len(chains) * ROW_H - (ROW_H - BOX_H)
    return Html(
        f'<svg width="{width:.0f}" height="{height}" viewBox="0 0 {width:.0f} {height}" role="img" '
        f'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace">'
        f"<title>found heads</title>{''.join(parts)}</svg>"
    )


def legend() -> Html:
    items = "".join(
        f'<span style="background:{FILL[kind][0]};border-color:{FILL[kind][1]}"></span>{esc(text)}'
        for kind, text in LEGEND
    )
    return Html(f'<div class="legend muted">{items}</div>')
