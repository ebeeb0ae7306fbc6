"""The SSL method registry: name -> class. Everything else about a method is its record in
:mod:`selfnas.methods` (defaults, heads, augmentation preset, the help line used here)."""

from __future__ import annotations

from typing import Any

from torch import nn

from selfnas.errors import ConfigError
from selfnas.methods import method_record
from selfnas.models.heads import HeadSpec
from selfnas.registry import Registry
from selfnas.ssl.base import SSLMethod, head_out_dim
from selfnas.ssl.byol import BYOL
from selfnas.ssl.moco import MoCo
from selfnas.ssl.simclr import SimCLR
from selfnas.ssl.simsiam import SimSiam

METHODS: Registry[type[SSLMethod]] = Registry("SSL method")


def _register(cls: type[SSLMethod]) -> None:
    """Register ``cls`` under its ``name``, with its record's summary as the help line."""
    METHODS.add(cls.name, cls, method_record(cls.name).summary)


_register(SimSiam)
_register(SimCLR)
_register(MoCo)
_register(BYOL)


def create_method(
    name: str,
    backbone: nn.Module,
    projector: HeadSpec,
    predictor: HeadSpec | None,
    per_view_bn: bool | None = None,
    **hparams: Any,
) -> SSLMethod:
    """Build method ``name`` on ``backbone`` with the given heads and hyper-parameters;
    ``per_view_bn`` as :attr:`SSLMethod.per_view_bn` (None: as the method's reference code)."""
    cls = METHODS.get(name)
    if method_record(name).needs_predictor and predictor is None:
        raise ConfigError(f"{name} needs a predictor head; give one or use the default heads")
    if predictor is not None and head_out_dim(predictor) != head_out_dim(projector):
        raise ConfigError(
            f"{name}: the predictor ends in {head_out_dim(predictor)} features but the projector in "
            f"{head_out_dim(projector)}, and the loss compares them; make both heads end in the same width "
            "(method.proj_out, or the last layer's dim in the genotype)"
        )
    try:
        method = cls(backbone, projector, predictor, **hparams)
    except TypeError as exc:
        raise ConfigError(f"bad hyper-parameters for {name}: {exc}") from None
    method.per_view_bn = per_view_bn
    return method
