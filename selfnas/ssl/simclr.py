"""SimCLR (Chen et al., 2020): contrast each view against all others in the batch."""

from __future__ import annotations

import torch

from selfnas import distributed
from selfnas.methods import SIMCLR
from selfnas.ssl.base import Head, SSLMethod, SSLOutput
from selfnas.ssl.losses import nt_xent


class SimCLR(SSLMethod):
    """NT-Xent over the 2N projected views at ``temperature`` (default in the spec: 0.5).

    Under torchrun the embeddings of every rank are gathered (with gradient) first, so the negatives
    are the global batch's and every rank computes the single-process loss (see
    :func:`selfnas.distributed.gather_with_grad`).

    Its reference code (google-research/simclr, ``tf2/model.py``) encodes both views as one batch,
    BatchNorm over all of it, so its spec's ``per_view_bn`` is off: ``per_view_bn=None`` keeps one
    set of statistics here.
    """

    spec = SIMCLR

    def __init__(self, backbone, projector: Head, predictor: Head | None, *, temperature: float):
        super().__init__(backbone, projector, None)
        self.temperature = temperature

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> SSLOutput:
        n = x1.shape[0]
        with self.view_batch():  # one pass over both views
            z = self.encode(torch.cat([x1, x2]))  # 2N x D
        z1, z2 = z[:n], z[n:]
        loss = nt_xent(distributed.gather_with_grad(z1), distributed.gather_with_grad(z2), self.temperature)
        return SSLOutput(loss, z1.detach())
