"""Seeded, deterministic carving of a train split: a validation part and a size limit."""

from __future__ import annotations

import torch

from selfnas.data.types import ImageSet
from selfnas.errors import ConfigError, DatasetError


def _permutation(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)


def carve_validation(train: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet | None]:
    """Split ``train`` into (train, val) by a seeded random permutation.

    The val part holds ``round(len(train) * fraction)`` images (at least one when
    ``fraction > 0``); both parts keep the original image order. ``fraction == 0``
    returns ``(train, None)``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return train, None
    n = len(train)
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise DatasetError(f"cannot carve a validation split of {fraction} from {n} training images")
    perm = _permutation(n, seed)
    val_index, _ = perm[:n_val].sort()
    train_index, _ = perm[n_val:].sort()
    return train.subset(train_index), train.subset(val_index)


def limit_images(images: ImageSet, limit: int | None, seed: int, what: str = "train_limit") -> ImageSet:
    """Keep a seeded random subset of ``limit`` images (all when ``limit`` is None or
    not smaller than the set). Subsets for a smaller limit are nested in larger ones."""
    if limit is None:
        return images
    if limit < 1:
        raise ConfigError(f"{what} must be a positive number of images, got {limit}")
    if limit >= len(images):
        return images
    index, _ = _permutation(len(images), seed)[:limit].sort()
    return images.subset(index)
