"""The strict header every genotype JSON shares, and the value checks its parsers use.

A leaf: the head, cell and variant genotypes import it; it imports nothing of theirs.
"""

from __future__ import annotations

from typing import Any

from selfnas.errors import GenotypeError

FORMAT = "selfnas-genotype"
VERSION = 1


def header(space: str) -> dict[str, Any]:
    """The first three keys of every genotype JSON of ``space``."""
    return {"format": FORMAT, "version": VERSION, "space": space}


def check_header(data: Any, space: str, expected: set[str]) -> None:
    """Refuse, with one :class:`GenotypeError` line, anything but a ``space`` genotype with exactly
    the keys ``expected``."""
    if not isinstance(data, dict):
        raise GenotypeError("a genotype must be a JSON object")
    if data.get("format") != FORMAT:
        raise GenotypeError(f"not a selfnas genotype: 'format' must be {FORMAT!r}")
    version = data.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise GenotypeError(
            f"unsupported genotype version {str(version)[:20]!r}; this selfnas reads {VERSION}"
        )
    if data.get("space") != space:
        raise GenotypeError(f"genotype space {str(data.get('space'))[:40]!r} is not {space!r}")
    keys = set(data)
    if keys != expected:
        extra, missing = sorted(keys - expected), sorted(expected - keys)
        what = f"unexpected keys {extra}" if extra else f"missing keys {missing}"
        raise GenotypeError(f"genotype has {what}"[:200])


def short(value: Any) -> str:
    """``repr`` cut to 40 characters: newlines escaped, so errors stay one line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_int(value: Any) -> bool:
    """An int that is not a bool (JSON ``true`` must not pass for 1)."""
    return isinstance(value, int) and not isinstance(value, bool)
