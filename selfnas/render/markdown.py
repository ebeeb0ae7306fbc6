"""Markdown kit: escape text so that it reads as text, and tables.

``<``, ``>`` and ``&`` become entities (no raw HTML); table pipes, backticks, emphasis and
link brackets are backslash-escaped.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*\[\]|#])")


def md(value: object) -> str:
    """``value`` as one line of literal Markdown text."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", text)


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, every cell escaped with :func:`md`."""
    lines = ["| " + " | ".join(md(h) for h in header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
