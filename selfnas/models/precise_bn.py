"""Precise BatchNorm: running statistics recomputed as an exact average over given batches.

A BatchNorm's running mean and variance are an exponential average (momentum 0.1) that starts at
(0, 1). After a few hundred steps it has forgotten the start; after 8 steps (one epoch of 2,000
images at batch 256) 43% of it is still the initial (0, 1), and a deep network evaluated with
those statistics shrinks or blows up its activations layer by layer: a well-trained classifier
then scores at chance in eval mode. Recomputing the statistics as the plain average over a few
thousand training images ("precise BN", Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021;
pycls's ``compute_precise_bn_stats``; one-shot NAS recalibrates subnetworks the same way) removes
the lag and, for long runs, changes almost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batchnorms(module: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm layer of ``module`` that tracks running statistics."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batchnorm(
    module: nn.Module,
    batches: Iterable[torch.Tensor],
    forward: Callable[[torch.Tensor], object] | None = None,
) -> int:
    """Set the running mean and variance of every BatchNorm in ``module`` to their average over
    ``batches`` (each the input of ``forward``, default ``module`` itself), with ``module`` in
    training mode and without gradients; weights, momenta and the train/eval flags are restored.

    Batches of a single sample are skipped (BatchNorm cannot train on them). Returns the number
    of batches used; with none, the statistics are left exactly as they were."""
    usable = [b for b in batches if len(b) > 1]
    norms = batchnorms(module)
    if not usable or not norms:
        return 0
    modes = [(m, m.training) for m in module.modules()]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative (equal-weight) average over the batches seen
    module.train()
    run = forward or module
    try:
        for b in usable:
            run(b)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        for m, training in modes:
            m.training = training
    return len(usable)
