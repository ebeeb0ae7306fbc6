"""The SSL method registry and its per-method defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from selfnas.errors import ConfigError
from selfnas.models.heads import HeadSpec
from selfnas.registry import Registry
from selfnas.ssl.base import SSLMethod, head_out_dim
from selfnas.ssl.byol import BYOL
from selfnas.ssl.moco import MoCo
from selfnas.ssl.simclr import SimCLR
from selfnas.ssl.simsiam import SimSiam


@dataclass(frozen=True)
class MethodDefaults:
    """Per-method optimisation defaults (SGD base LR per 256 images, weight decay)."""

    base_lr: float
    weight_decay: float
    needs_predictor: bool


METHODS: Registry[type[SSLMethod]] = Registry("SSL method")
METHODS.add("simsiam", SimSiam, "SimSiam: predictor + stop-gradient, no negatives")
METHODS.add("simclr", SimCLR, "SimCLR: NT-Xent over in-batch negatives (temperature 0.5)")
METHODS.add("moco", MoCo, "MoCo v2: momentum key encoder + queue of negatives")
METHODS.add("byol", BYOL, "BYOL: momentum target network + predictor")

METHOD_DEFAULTS = {
    "simsiam": MethodDefaults(base_lr=0.05, weight_decay=5e-4, needs_predictor=True),
    "simclr": MethodDefaults(base_lr=0.3, weight_decay=1e-4, needs_predictor=False),
    "moco": MethodDefaults(base_lr=0.06, weight_decay=5e-4, needs_predictor=False),
    "byol": MethodDefaults(base_lr=0.06, weight_decay=5e-4, needs_predictor=True),
}


def create_method(
    name: str, backbone: nn.Module, projector: HeadSpec, predictor: HeadSpec | None, **hparams: Any
) -> SSLMethod:
    """Build method ``name`` on ``backbone`` with the given heads and hyper-parameters."""
    cls = METHODS.get(name)
    if METHOD_DEFAULTS[name].needs_predictor and predictor is None:
        raise ConfigError(f"{name} needs a predictor head; give one or use the default heads")
    if predictor is not None and head_out_dim(predictor) != head_out_dim(projector):
        raise ConfigError(
            f"{name}: the predictor ends in {head_out_dim(predictor)} features but the projector in "
            f"{head_out_dim(projector)}, and the loss compares them; make both heads end in the same width "
            "(method.proj_out, or the last layer's dim in the genotype)"
        )
    try:
        return cls(backbone, projector, predictor, **hparams)
    except TypeError as exc:
        raise ConfigError(f"bad hyper-parameters for {name}: {exc}") from None
