"""HTML building blocks for a self-contained report: escaping, tables, embedded images, the page.

Text from files is untrusted: every helper escapes what it is given unless it is already
:class:`Html`. The page carries a Content-Security-Policy that forbids scripts and every
load but ``data:`` images, so the report never reaches the network, and a string that
slipped through escaping still could not run or fetch anything.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root { --fg: #1f2933; --muted: #616e7c; --line: #d9e2ec; --bg-soft: #f5f7fa; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; word-break: break-all; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 17px; margin: 26px 0 8px; }
h4, h5, h6 { font-size: 15px; margin: 20px 0 6px; }
.subrun { border-left: 4px solid var(--line); padding-left: 18px; margin-top: 36px; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 1px 10px; border-radius: 10px; font-weight: 600; font-size: 13px;
         color: #fff; background: #7b8794; vertical-align: middle; }
.badge.finished { background: #2f855a; } .badge.running { background: #2b6cb0; }
.badge.interrupted { background: #c05621; } .badge.failed { background: #c53030; }
.badge.evaluating { background: #6b46c1; }
.bar { height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; max-width: 420px;
       margin: 6px 0 2px; }
.bar > div { height: 100%; background: #3e7bfa; }
.warn { background: #fffbea; border: 1px solid #f0b429; border-radius: 6px; padding: 8px 14px;
        margin: 10px 0; }
.warn li { margin: 2px 0; }
.verdict { border: 2px solid var(--line); border-radius: 6px; padding: 8px 14px; margin: 10px 0 18px; }
.verdict.better { border-color: #2f855a; } .verdict.worse { border-color: #c53030; }
.verdict .sentence { font-size: 16px; font-weight: 600; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--bg-soft); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.alert td { background: #fff5f5; }
pre { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px;
      font-size: 13px; max-height: 420px; overflow: auto; white-space: pre-wrap; word-break: break-all; }
code { font-size: 13px; background: var(--bg-soft); padding: 1px 4px; border-radius: 3px; }
figure { margin: 10px 0 18px; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; }
nav { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 6px; padding: 6px 16px;
      margin: 14px 0; font-size: 14px; }
nav ul { margin: 2px 0; padding-left: 18px; } nav a { color: #2b6cb0; text-decoration: none; }
nav ul ul { display: inline; padding-left: 8px; } nav ul ul li { display: inline; margin-right: 12px; }
nav ul ul li::before { content: "\\00b7"; color: var(--muted); margin-right: 6px; }

.legend span { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin: 0 4px 0 14px;
               vertical-align: -1px; border: 1px solid; }
summary { cursor: pointer; color: var(--muted); }
"""


class Html(str):
    """A string of trusted markup: helpers insert it as is instead of escaping it.

    Concatenation keeps it markup and escapes the other side: ``Html("<b>") + "<x>"`` is
    ``Html("<b>&lt;x&gt;")``.
    """

    def __add__(self, other: object) -> Html:
        if not isinstance(other, str):
            return NotImplemented
        return Html(str.__add__(self, esc(other)))

    def __radd__(self, other: object) -> Html:
        if not isinstance(other, str):
            return NotImplemented
        return Html(str.__add__(esc(other), self))


def esc(value: object) -> Html:
    """Escape ``value`` for HTML text and attribute values, unless it is already :class:`Html`."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[object]) -> Html:
    return Html("".join(esc(p) for p in parts))


def tag(name: str, content: object = "", **attrs: object) -> Html:
    """``<name attr="...">content</name>``; attribute names are ours, values are escaped.

    A trailing underscore is dropped from attribute names (``class_`` -> ``class``).
    """
    rendered = "".join(f' {k.rstrip("_")}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    return Html(f"<{name}{rendered}>{esc(content)}</{name}>")


def table(header: list[str], rows: list[list[object]], alert_rows: set[int] | None = None) -> Html:
    """A table of text cells; cells that look like numbers or percentages are right-aligned."""
    head = tag("tr", join(tag("th", h) for h in header))
    body = []
    for i, row in enumerate(rows):
        cells = join(tag("td", c, class_="num" if _numeric(c) else None) for c in row)
        body.append(tag("tr", cells, class_="alert" if alert_rows and i in alert_rows else None))
    return tag("table", tag("thead", head) + tag("tbody", join(body)))


def _numeric(cell: object) -> bool:
    text = str(cell).rstrip("%")
    try:
        float(text)
    except ValueError:
        return False
    return True


def pre(text: str) -> Html:
    return tag("pre", text)


def png(path: Path, caption: str | None = None) -> Html:
    """A PNG file embedded as a ``data:`` URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    img = Html(f'<img src="data:image/png;base64,{data}" alt="{esc(caption or path.name)}">')
    return tag("figure", img + (tag("figcaption", caption) if caption else ""))


def bullets(items: Iterable[object], class_: str | None = None) -> Html:
    return tag("ul", join(tag("li", i) for i in items), class_=class_)


def page(title: str, body: Html) -> str:
    """The complete document: CSS inline, no scripts, no external resources."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{tag('title', title)}<style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
