"""What training does when the numbers stop being numbers.

The trainer checks, at every log or checkpoint point, that the summed loss since the last check
is finite and that every floating-point tensor of the model (weights and BatchNorm statistics)
is finite: a non-finite gradient shows up there as non-finite weights after the optimizer step,
and a checkpoint is therefore never written with bad weights. On a failed check,
``run.nan_policy`` decides:

* ``stop``: the run fails with one line and keeps its last good checkpoint;
* ``rollback`` (default): reload the last good checkpoint (model, every optimizer, step and
  counters), multiply the LR by ``run.nan_lr_backoff`` and go on; after ``run.nan_retries``
  rollbacks the run stops as with ``stop``.

The LR scale and the number of rollbacks are part of every checkpoint, so a run resumed after a
kill continues exactly as the uninterrupted one would (the scale multiplies the step's
scheduled LR; at 1.0 the product is bit-identical to the unscaled LR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from selfnas.config import RunConfig


def all_finite(module: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``module`` is finite (one host sync)."""
    flags = [torch.isfinite(t).all() for t in module.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


@dataclass
class NanGuard:
    """The rollback policy and its state (saved with each checkpoint under ``numerics``)."""

    policy: str = "rollback"
    retries: int = 3
    backoff: float = 0.5
    lr_scale: float = 1.0
    rollbacks: int = 0

    @classmethod
    def from_config(cls, run: RunConfig) -> NanGuard:
        return cls(run.nan_policy, run.nan_retries, run.nan_lr_backoff)

    def state(self) -> dict[str, Any]:
        return {"lr_scale": self.lr_scale, "rollbacks": self.rollbacks}

    def load_state(self, state: dict[str, Any]) -> None:
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.rollbacks = int(state.get("rollbacks", 0))

    def can_roll_back(self) -> bool:
        return self.policy == "rollback" and self.rollbacks < self.retries

    def back_off(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Count one rollback and lower the LR: the weight LR through ``lr_scale`` (the trainer
        multiplies the scheduled LR by it), every other optimizer's (the DARTS architecture
        step's) in its param groups, which its checkpoint keeps."""
        self.rollbacks += 1
        self.lr_scale *= self.backoff
        for name, optimizer in optimizers.items():
            if name != "weights":
                for group in optimizer.param_groups:
                    group["lr"] = group["lr"] * self.backoff

    def note(self) -> str:
        """`` after N rollbacks`` for the final error message ("" when none happened)."""
        if not self.rollbacks:
            return ""
        return f" again after {self.rollbacks} rollback(s) with the LR scaled to x{self.lr_scale:g}"
