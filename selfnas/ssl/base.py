"""The one small interface every SSL method implements."""

from __future__ import annotations

import copy
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from selfnas.methods import MethodRecord
from selfnas.models.heads import HeadSpec, build_head
from selfnas.models.view_norm import per_view_batchnorm

#: a head is given as a spec (hand-crafted or found) or as a ready module (a search supernet)
Head = HeadSpec | nn.Module


def head_out_dim(head: Head) -> int:
    return head.out_dim if isinstance(head, HeadSpec) else int(head.out_dim)


def _build(head: Head, in_dim: int) -> nn.Module:
    return build_head(head, in_dim) if isinstance(head, HeadSpec) else head


@dataclass
class SSLOutput:
    """What a training step needs from a method.

    loss: scalar. embedding: N x D projector output of view 1 (for the collapse monitor).
    """

    loss: torch.Tensor
    embedding: torch.Tensor


class SSLMethod(nn.Module):
    """Backbone + projector (+ predictor); ``forward(x1, x2)`` returns an :class:`SSLOutput`.

    Subclasses set ``spec`` (their record in :mod:`selfnas.methods`: name, hyper-parameters and
    their defaults, which :func:`selfnas.ssl.registry.create_method` passes in full) and implement
    ``forward``, encoding the two views as one batched forward inside :meth:`view_batch`. Methods
    with a momentum (target) network override :meth:`on_step_end`, called after every optimizer
    step with ``progress`` = fraction of training done, in [0, 1].
    """

    spec: MethodRecord
    #: the method's name, from its record
    name: str
    #: what ``per_view_bn=None`` means, from its record: whether the method's reference code encodes
    #: each view in a forward of its own, so that BatchNorm normalises each view with its own statistics
    paper_per_view_bn: bool

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "spec" in cls.__dict__:  # a method's class: its name and BatchNorm default from its record
            cls.name, cls.paper_per_view_bn = cls.spec.name, cls.spec.per_view_bn

    def __init__(self, backbone: nn.Module, projector: Head, predictor: Head | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = _build(projector, backbone.out_dim)
        self.predictor = _build(predictor, head_out_dim(projector)) if predictor is not None else None
        #: set by the architecture step of a search: the backbone runs without gradients
        self.freeze_backbone = False
        #: BatchNorm statistics of the batched views: per view (True), over all the views at once
        #: (False), or None: as the method's reference code (``paper_per_view_bn``)
        self.per_view_bn: bool | None = None

    def view_batch(self, views: int = 2) -> AbstractContextManager[None]:
        """The context of one batched forward of ``views`` equal views concatenated along dim 0
        (online and target networks alike): BatchNorm statistics per view unless they are off
        (:func:`selfnas.models.view_norm.per_view_batchnorm`)."""
        per_view = self.paper_per_view_bn if self.per_view_bn is None else self.per_view_bn
        return per_view_batchnorm(self, views) if per_view else nullcontext()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """N x C x H x W -> N x D projector output of the online network."""
        if self.freeze_backbone:
            with torch.no_grad():
                features = self.backbone(x)  # N x F
            return self.projector(features)
        return self.projector(self.backbone(x))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> SSLOutput:
        raise NotImplementedError

    def on_step_end(self, progress: float) -> None:
        """Hook after each optimizer step (momentum updates)."""


class MomentumTarget(nn.Module):
    """An EMA copy of some online modules (BYOL's target, MoCo's key encoder).

    Only weights are averaged; buffers (BatchNorm statistics) are copied, and so are
    architecture parameters (named ``alpha``): the target uses the online network's current
    architecture rather than an average of past ones. The copy never receives gradients.
    ``momentum(progress)`` follows BYOL's cosine ramp from ``base`` to 1
    when ``cosine`` is set, else stays at ``base``.
    """

    def __init__(self, online: nn.Module, base: float, cosine: bool) -> None:
        super().__init__()
        self.net = copy.deepcopy(online)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.base = base
        self.cosine = cosine
        self._arch = [i for i, (name, _) in enumerate(self.net.named_parameters()) if name.endswith("alpha")]

    def momentum(self, progress: float) -> float:
        if not self.cosine:
            return self.base
        return 1.0 - (1.0 - self.base) * (math.cos(math.pi * progress) + 1.0) / 2.0

    @torch.no_grad()
    def update(self, online: nn.Module, progress: float) -> None:
        m = self.momentum(progress)
        arch = set(self._arch)
        pairs = list(zip(self.net.parameters(), online.parameters(), strict=True))
        target_params = [t for i, (t, _) in enumerate(pairs) if i not in arch]
        online_params = [o for i, (_, o) in enumerate(pairs) if i not in arch]
        torch._foreach_mul_(target_params, m)
        torch._foreach_add_(target_params, online_params, alpha=1.0 - m)
        for i in self._arch:
            pairs[i][0].copy_(pairs[i][1])
        for tb, ob in zip(self.net.buffers(), online.buffers(), strict=True):
            tb.copy_(ob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(x)
