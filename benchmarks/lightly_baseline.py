"""The hand-written baseline a user would otherwise write: lightly's SimSiam heads and loss,
per-sample torchvision v2 augmentation in a DataLoader. Shared by the benchmarks."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2


class TwoViews(Dataset):
    """uint8 N x C x H x W images -> two independently augmented float views per sample."""

    def __init__(self, images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        size = images.shape[-1]
        self.images = images
        self.transform = v2.Compose(
            [
                v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomApply([v2.ColorJitter(0.4, 0.4)], p=0.8),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean, std),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.images[i]
        return self.transform(img), self.transform(img)


class LightlySimSiam(nn.Module):
    def __init__(self, backbone: nn.Module, hidden: int = 512, out: int = 128, pred_hidden: int = 64) -> None:
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead

        super().__init__()
        self.backbone = backbone
        self.projection_head = SimSiamProjectionHead(backbone.out_dim, hidden, out)
        self.prediction_head = SimSiamPredictionHead(out, pred_hidden, out)
        self.criterion = NegativeCosineSimilarity()

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        z0 = self.projection_head(self.backbone(x0))
        z1 = self.projection_head(self.backbone(x1))
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        return 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))


def train_baseline(
    model: LightlySimSiam,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    workers: int = 2,
    lr: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """SGD training as in lightly's SimSiam example; stops at max_steps or max_seconds."""
    torch.manual_seed(seed)
    loader = DataLoader(
        TwoViews(images, mean, std),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    opt = torch.optim.SGD(model.parameters(), lr=lr * batch_size / 256, momentum=0.9, weight_decay=5e-4)
    model.train()
    steps, t0 = 0, time.perf_counter()
    while True:
        for x0, x1 in loader:
            loss = model(x0, x1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            elapsed = time.perf_counter() - t0
            if (max_steps and steps >= max_steps) or (max_seconds and elapsed >= max_seconds):
                return {"steps": steps, "seconds": elapsed, "pairs_per_s": steps * batch_size / elapsed}
