"""MoCo v2 (Chen et al., 2020): momentum key encoder and a queue of negative keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from selfnas import distributed
from selfnas.methods import MOCO
from selfnas.ssl.base import Head, MomentumTarget, SSLMethod, SSLOutput, head_out_dim
from selfnas.ssl.losses import info_nce


class MoCo(SSLMethod):
    """Symmetric InfoNCE of queries against momentum keys and a queue of ``queue_size`` negatives.

    The key encoder is an EMA (``momentum``) of backbone + projector (defaults in the spec:
    temperature 0.2, momentum 0.99, 4096 keys). Keys of both views
    are enqueued after each step. Per-view BatchNorm replaces shuffle-BN: the two views are
    encoded in one pass, each normalised with its own statistics so they don't leak between them
    (``per_view_bn=False`` mixes them, which shuffle-BN exists to prevent).
    Under torchrun the keys of every rank are enqueued, in global-batch order, so the queue
    is the single-process one on every rank.
    """

    spec = MOCO

    def __init__(
        self,
        backbone,
        projector: Head,
        predictor: Head | None,
        *,
        temperature: float,
        momentum: float,
        queue_size: int,
    ):
        super().__init__(backbone, projector, None)
        self.temperature = temperature
        self.key_encoder = MomentumTarget(
            nn.Sequential(self.backbone, self.projector), momentum, cosine=False
        )
        queue = F.normalize(torch.randn(queue_size, head_out_dim(projector)), dim=1)
        self.register_buffer("queue", queue)  # K x D normalized keys
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending_keys: torch.Tensor | None = None

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> SSLOutput:
        n = x1.shape[0]
        x = torch.cat([x1, x2])  # 2N x C x H x W
        with self.view_batch():  # one pass over both views; BatchNorm statistics per view
            q = self.encode(x)  # 2N x D
            k = self.key_encoder(x)  # 2N x D, no grad
        q1, q2, k1, k2 = q[:n], q[n:], k[:n], k[n:]
        queue = self.queue.clone()  # the enqueue after the step must not alter autograd inputs
        loss = (info_nce(q1, k2, queue, self.temperature) + info_nce(q2, k1, queue, self.temperature)) / 2
        if self.training:
            keys = torch.cat([distributed.gather(k1), distributed.gather(k2)])
            self._pending_keys = F.normalize(keys.float(), dim=1)
        return SSLOutput(loss, q1.detach())

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        self.key_encoder.update(nn.Sequential(self.backbone, self.projector), progress)
        if self._pending_keys is None:
            return
        keys, self._pending_keys = self._pending_keys, None
        size = self.queue.shape[0]
        keys = keys[:size]
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % size)
