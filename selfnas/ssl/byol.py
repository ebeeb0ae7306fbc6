"""BYOL (Grill et al., 2020): predict the EMA target network's projection of the other view."""

from __future__ import annotations

import torch
from torch import nn

from selfnas.methods import BYOL as BYOL_SPEC
from selfnas.ssl.base import Head, MomentumTarget, SSLMethod, SSLOutput
from selfnas.ssl.losses import negative_cosine_similarity


class BYOL(SSLMethod):
    """``L = (2 - 2 cos(p1, sg(z2')) + 2 - 2 cos(p2, sg(z1'))) / 2`` with z' from the target.

    The target (backbone + projector) is an EMA whose momentum ramps from ``momentum``
    (default in the spec: 0.99) to 1 on a cosine over training.
    """

    spec = BYOL_SPEC

    def __init__(self, backbone, projector: Head, predictor: Head | None, *, momentum: float):
        super().__init__(backbone, projector, predictor)
        self.target = MomentumTarget(nn.Sequential(self.backbone, self.projector), momentum, cosine=True)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> SSLOutput:
        assert self.predictor is not None, "BYOL needs a predictor head"
        n = x1.shape[0]
        x = torch.cat([x1, x2])  # 2N x C x H x W
        with self.view_batch():  # one pass over both views; BatchNorm statistics per view
            z = self.encode(x)  # 2N x D
            p = self.predictor(z)  # 2N x D
            t = self.target(x)  # 2N x D, no grad
        p1, p2, t1, t2 = p[:n], p[n:], t[:n], t[n:]
        loss = 2 + negative_cosine_similarity(p1, t2) + negative_cosine_similarity(p2, t1)
        return SSLOutput(loss, z[:n].detach())

    def on_step_end(self, progress: float) -> None:
        self.target.update(nn.Sequential(self.backbone, self.projector), progress)
