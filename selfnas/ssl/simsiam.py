"""SimSiam (Chen & He, 2021): siamese views, predictor, stop-gradient, no negatives."""

from __future__ import annotations

import torch

from selfnas.methods import SIMSIAM
from selfnas.ssl.base import SSLMethod, SSLOutput
from selfnas.ssl.losses import negative_cosine_similarity


class SimSiam(SSLMethod):
    """``L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2`` with D the negative cosine similarity."""

    spec = SIMSIAM

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> SSLOutput:
        assert self.predictor is not None, "SimSiam needs a predictor head"
        n = x1.shape[0]
        with self.view_batch():  # one pass over both views; BatchNorm statistics per view
            z = self.encode(torch.cat([x1, x2]))  # 2N x D
            p = self.predictor(z)  # 2N x D
        z1, z2 = z[:n], z[n:]
        p1, p2 = p[:n], p[n:]
        loss = negative_cosine_similarity(p1, z2) / 2 + negative_cosine_similarity(p2, z1) / 2
        return SSLOutput(loss, z1.detach())
