"""The in-memory image set every loader returns and every trainer consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageSet:
    """A whole split held as one tensor (airbench-style: no per-sample Python).

    images: uint8, N x C x H x W (C is 1 or 3).
    labels: int64, N, or ``None`` for unlabeled data (never dummy labels).
    classes: class names when labeled.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 NxCxHxW, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.images.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {self.images.shape[1]}")
        if self.labels is not None and self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        """Image side in pixels (images are square after loading)."""
        return int(self.images.shape[-1])

    @property
    def labeled(self) -> bool:
        return self.labels is not None

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        return len(self.classes) if self.classes else int(self.labels.max()) + 1

    def subset(self, index: torch.Tensor) -> ImageSet:
        labels = None if self.labels is None else self.labels[index]
        return ImageSet(self.images[index], labels, self.classes)


@dataclass(frozen=True)
class DatasetSplits:
    """train / val / test. ``val`` is carved from train with a seed; ``test`` is
    only ever reported on, never used to select anything."""

    name: str
    train: ImageSet
    val: ImageSet | None
    test: ImageSet | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
