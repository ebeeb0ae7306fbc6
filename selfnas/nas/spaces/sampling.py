"""Distinct architectures of a search space, drawn as a pure function of a seed (the study's
architectures, a ground-truth table's rows)."""

from __future__ import annotations

import json
import random
from typing import Any

from selfnas.errors import ConfigError


def sample_genotypes(space: Any, n: int, seed: int) -> list[Any]:
    """``n`` distinct genotypes of ``space``, a pure function of ``seed``.

    Draws with ``space.sample`` until ``n`` distinct ones are found; when ``n`` is more than half
    the space, picks ``n`` of its enumeration instead (rejection would take ever longer).
    """
    size = space.size()
    if n > size:
        raise ConfigError(
            f"space {space.name} holds {size} architectures; ask for at most that many (--archs)"
        )
    rng = random.Random(seed)
    if 2 * n > size:
        return rng.sample(list(space.enumerate()), n)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        genotype = space.sample(rng)
        key = json.dumps(genotype.to_json(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(genotype)
    return out
