"""Per-view BatchNorm: one batched forward of several views, BatchNorm statistics per view.

An SSL method encodes its augmented views as one batch (views concatenated along dim 0) for
speed. Plain BatchNorm then normalises every view with the statistics of all of them; SimSiam,
BYOL and MoCo encode each view in a forward of its own, so each view is normalised with its own
statistics. Inside ``with per_view_batchnorm(model, views):`` every plain ``nn.BatchNorm1d`` /
``2d`` / ``3d`` of ``model`` that normalises with batch statistics (training mode, or no running
statistics) splits its N x ... batch into ``views`` equal chunks along dim 0 and normalises each
with its own mean and biased variance; the outputs are concatenated back in order. Eval mode
with running statistics is untouched.

Running statistics are updated as ``views`` separate forwards of the chunks, in order, would:
per chunk ``num_batches_tracked += 1`` and ``running = (1 - f) * running + f * stat``, ``f`` the
momentum (``1 / num_batches_tracked`` when it is None), ``stat`` the chunk's mean and unbiased
variance. So outputs, gradients and running statistics equal those of separate forwards (up to
the float rounding of the batched layers around the norms).

The context swaps the class of each such module to a per-view subclass (same state, as
:func:`selfnas.distributed.prepare_model` does for SyncBatchNorm) and back on exit, even on an
error: outside it the model holds plain ``nn.BatchNorm`` modules, so evaluation, feature
extraction, checkpoints, deep copies and export never see the per-view class. Under torchrun the
norms are :class:`selfnas.distributed.SyncBatchNorm`, swapped too: each rank's batch is its slice
of every view, in view order, so a chunk's all-reduce gives that view's statistics over the global
batch, as one process has them. Other BatchNorm subclasses are left alone and keep one set of
statistics over the whole batch. A nested context finds no plain modules left and changes
nothing: the outer count holds. The swap is visible to every thread that runs the model meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from selfnas.distributed import SyncBatchNorm


class _PerView:
    """Mixed in before a BatchNorm class: batch statistics per chunk of ``views``."""

    views: int

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        plain = super().forward  # type: ignore[misc]  # the BatchNorm class after this mixin
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)  # type: ignore[attr-defined]
        if not batch_stats:
            return plain(input)
        n = input.shape[0]
        if n % self.views:
            raise ValueError(f"per-view BatchNorm: a batch of {n} does not split into {self.views} views")
        out = [plain(chunk) for chunk in input.chunk(self.views)]  # (N / views) x ... each, in order
        return torch.cat(out)  # N x ...


class PerViewBatchNorm1d(_PerView, nn.BatchNorm1d):
    pass


class PerViewBatchNorm2d(_PerView, nn.BatchNorm2d):
    pass


class PerViewBatchNorm3d(_PerView, nn.BatchNorm3d):
    pass


class PerViewSyncBatchNorm(_PerView, SyncBatchNorm):
    pass


_PER_VIEW: dict[type[nn.Module], type[nn.Module]] = {
    nn.BatchNorm1d: PerViewBatchNorm1d,
    nn.BatchNorm2d: PerViewBatchNorm2d,
    nn.BatchNorm3d: PerViewBatchNorm3d,
    SyncBatchNorm: PerViewSyncBatchNorm,
}
_PLAIN = {per_view: plain for plain, per_view in _PER_VIEW.items()}


@contextmanager
def per_view_batchnorm(model: nn.Module, views: int) -> Iterator[None]:
    """Within the block, the plain BatchNorm modules of ``model`` normalise each of ``views`` equal
    chunks of their batch with its own statistics (see the module docstring for the exact rule)."""
    if views < 1:
        raise ValueError(f"per-view BatchNorm needs at least one view, got {views}")
    swapped = [m for m in model.modules() if type(m) in _PER_VIEW]
    for m in swapped:
        m.__class__ = _PER_VIEW[type(m)]
        m.views = views
    try:
        yield
    finally:
        for m in swapped:
            m.__class__ = _PLAIN[type(m)]
            del m.views
