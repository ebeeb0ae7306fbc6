"""Frozen-backbone feature extraction for the kNN monitor and the linear probe."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from selfnas.device import Precision, autocast


def extract_features(
    backbone: nn.Module,
    images: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    precision: Precision = "fp32",
) -> torch.Tensor:
    """Embed every image with ``backbone`` in eval mode, without gradients.

    images: uint8, N x C x H x W (any device; batches are moved to ``device``).
    normalize: maps a uint8 batch (on ``device``) to the float batch the backbone expects,
        e.g. ``lambda x: (x.float() / 255 - mean) / std``.
    precision: ``bf16``: the backbone runs under bf16 autocast (CPU or CUDA, as it trained; see
        :func:`selfnas.device.autocast`); ``fp32``: in float32.
    Returns float32, N x D on the CPU (backbone outputs are flattened after the batch dim).
    The train/eval flag of every submodule is restored afterwards, even on error.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 NxCxHxW, got {images.dtype} {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is empty: there is nothing to extract features from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    modes = [(module, module.training) for module in backbone.modules()]
    backbone.eval()
    chunks: list[torch.Tensor] = []
    try:
        with torch.inference_mode(), autocast(device, precision):
            for start in range(0, images.shape[0], batch_size):
                batch = images[start : start + batch_size].to(device, non_blocking=True)
                out = backbone(normalize(batch))
                chunks.append(out.flatten(start_dim=1).float().cpu())
    finally:
        for module, training in modes:
            module.training = training
    # cat outside inference mode gives a normal tensor that autograd (the linear probe) may use.
    return torch.cat(chunks)
