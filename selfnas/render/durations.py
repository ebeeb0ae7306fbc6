"""Seconds as a person reads them: one formatter for every "eta" and "took" line."""

from __future__ import annotations


def duration(seconds: float, compact: bool = False) -> str:
    """``42`` -> ``"42 s"``, ``200`` -> ``"3 min 20 s"``, ``4000`` -> ``"1 h 6 min"``; ``compact``
    (a study's one-line-per-trial progress): ``"42s"``, ``"3m20s"``, ``"1h06m"``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s" if compact else f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if compact else f"{s // 60} min {s % 60} s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if compact else f"{s // 3600} h {s % 3600 // 60} min"
