"""Learning-rate schedule: linear warm-up then cosine decay, a pure function of the step."""

from __future__ import annotations

import math


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int, peak_lr: float, final_lr: float = 0.0
) -> float:
    """LR at ``step`` (0-based). Stateless, so a resumed run needs no scheduler state."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
