"""The SSL method registry: each method's record (:mod:`selfnas.methods`) -> its class, and
:func:`create_method`, which builds a method from its record. Everything else about a method is its
record (defaults, heads, augmentation preset, the help line used here)."""

from __future__ import annotations

from typing import Any

from torch import nn

from selfnas.errors import ConfigError, RegistryError
from selfnas.methods import METHOD_RECORDS, MethodRecord
from selfnas.models.heads import HeadSpec
from selfnas.registry import Registry
from selfnas.ssl.base import SSLMethod, head_out_dim
from selfnas.ssl.byol import BYOL
from selfnas.ssl.moco import MoCo
from selfnas.ssl.simclr import SimCLR
from selfnas.ssl.simsiam import SimSiam

#: each method's class by its record
CLASSES: dict[MethodRecord, type[SSLMethod]] = {cls.spec: cls for cls in (SimSiam, SimCLR, MoCo, BYOL)}
if set(CLASSES) != set(METHOD_RECORDS.values()) or any(  # pragma: no cover - a record without its class
    cls.__name__ != spec.class_name for spec, cls in CLASSES.items()
):
    raise RegistryError("every method record needs its class in selfnas/ssl/, named as the record says")

#: the classes by method name, with each record's summary as the help line (``selfnas info``)
METHODS: Registry[type[SSLMethod]] = Registry("SSL method")
for _spec, _cls in CLASSES.items():
    METHODS.add(_spec.name, _cls, _spec.summary)


def create_method(
    spec: MethodRecord,
    backbone: nn.Module,
    projector: HeadSpec | nn.Module,
    predictor: HeadSpec | nn.Module | None,
    per_view_bn: bool | None = None,
    **hparams: Any,
) -> SSLMethod:
    """Build the method of record ``spec`` on ``backbone`` with the given heads; ``hparams`` over
    the record's defaults (:meth:`~selfnas.methods.MethodRecord.hparams`: typed, complete);
    ``per_view_bn`` as :attr:`SSLMethod.per_view_bn` (None: as the method's reference code)."""
    name = spec.name
    if spec.needs_predictor and predictor is None:
        raise ConfigError(f"{name} needs a predictor head; give one or use the default heads")
    if predictor is not None and head_out_dim(predictor) != head_out_dim(projector):
        raise ConfigError(
            f"{name}: the predictor ends in {head_out_dim(predictor)} features but the projector in "
            f"{head_out_dim(projector)}, and the loss compares them; make both heads end in the same width "
            "(method.proj_out, or the last layer's dim in the genotype)"
        )
    method = CLASSES[spec](backbone, projector, predictor, **spec.hparams(hparams))
    method.per_view_bn = per_view_bn
    return method
