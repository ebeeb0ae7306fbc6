"""Batched augmentation of labeled batches for supervised training (DARTS's CIFAR recipe).

``uint8 B x C x H x W -> float32 B x C x H x W``: random crop of the image zero-padded by
``padding`` pixels (torchvision ``RandomCrop(H, padding)``), horizontal flip with probability 1/2,
normalisation, then cutout (DeVries & Taylor 2017, as DARTS applies it: after normalisation, one
``length x length`` square per image set to 0, its centre uniform over the image and the square
clipped at the borders). Every random number comes from the caller's generator, a few calls per
batch, so the result is a pure function of the generator's seed; no per-sample Python.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Float B x C x H x W -> B x C x H x W: a crop of ``x`` zero-padded by ``padding`` on each side
    at a uniform offset in ``0..2 * padding`` per axis, then a flip of half the images (when ``flip``)."""
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)  # 2 x B
    flips = torch.rand(b, generator=generator).to(x.device) < 0.5 if flip else None  # B
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))  # B x C x H+2p x W+2p
        rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]  # B x 1 x H x 1
        cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]  # B x 1 x 1 x W
        x = padded.gather(2, rows.expand(b, c, h, w + 2 * padding)).gather(3, cols.expand(b, c, h, w))
    if flips is not None:
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
    return x


def cutout_mask(
    n: int, height: int, width: int, length: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Float N x 1 x H x W: 0 inside one ``length x length`` square per image (rows and columns
    ``centre - length // 2`` up to ``centre - length // 2 + length - 1``, clipped at the borders;
    centre uniform over the pixels), 1 elsewhere."""
    centre_r = torch.randint(0, height, (n,), generator=generator)
    centre_c = torch.randint(0, width, (n,), generator=generator)
    start = torch.stack([centre_r, centre_c]).to(device) - length // 2  # 2 x N: first row, first column
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    inside_r = (rows[None, :] >= start[0, :, None]) & (rows[None, :] < start[0, :, None] + length)  # N x H
    inside_c = (cols[None, :] >= start[1, :, None]) & (cols[None, :] < start[1, :, None] + length)  # N x W
    return (~(inside_r[:, :, None] & inside_c[:, None, :])).float()[:, None]  # N x 1 x H x W


class SupervisedAugment:
    """Crop, flip, normalise and cut out a uint8 batch; ``normalize`` is the evaluation input.

    ``mean`` / ``std`` are per channel in [0, 1] units.
    """

    def __init__(
        self, mean: tuple[float, ...], std: tuple[float, ...], padding: int, flip: bool, cutout: int
    ) -> None:
        self.padding, self.flip, self.cutout = padding, flip, cutout
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 B x C x H x W -> float32 B x C x H x W, ``(pixel / 255 - mean) / std``."""
        return self._standardize(images.float().div_(255))

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        if self._mean.device != x.device:
            self._mean, self._std = self._mean.to(x.device), self._std.to(x.device)
        return x.sub_(self._mean).div_(self._std)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 B x C x H x W -> augmented float32 B x C x H x W on the images' device."""
        x = images.float().div_(255)  # B x C x H x W in [0, 1]: the crop pads with black, as torchvision
        if self.padding > 0 or self.flip:
            x = random_crop_flip(x, self.padding, self.flip, generator)
        x = self._standardize(x)
        if self.cutout > 0:
            b, _, h, w = x.shape
            x = x * cutout_mask(b, h, w, self.cutout, generator, x.device)
        return x
