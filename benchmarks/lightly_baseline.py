"""The baseline a competent lightly user writes by hand, shared by the benchmarks.

lightly's SimSiam heads and loss, each view through the backbone in a forward of its own (lightly's
way), per-sample torchvision v2 augmentation in a DataLoader. It gets the levers such a user would
pull: the model and the batches in channels_last, the DataLoader workers and main-process threads
picked per run by timing the candidates (:func:`calibrate_loader`), optionally ``torch.compile``, and
selfnas's own optimizer: the same peak LR, weight decay and BatchNorm / bias exclusions, and the same
warm-up + cosine schedule over its own budget (:func:`selfnas_optimizer`, :func:`warmup_cosine`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from itertools import chain

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from selfnas.config import TrainConfig
from selfnas.training.builder import weight_optimizer
from selfnas.training.schedule import warmup_cosine
from selfnas.training.trainer import Plan


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
        return self.transform(img), self.transform(img)  # C x H x W each


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
        z0 = self.projection_head(self.backbone(x0))  # N x out
        z1 = self.projection_head(self.backbone(x1))  # N x out
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        return 0.5 * (self.criterion(p0, z1.detach()) + self.criterion(p1, z0.detach()))


@dataclass(frozen=True)
class LoaderSetting:
    """DataLoader worker processes and the main process's intra-op threads (each worker: 1)."""

    workers: int
    threads: int


def loader_candidates(cores: int) -> list[LoaderSetting]:
    """What a user tries on ``cores`` cores: 0, 1 and 2 workers with the main process's threads
    filling the cores the workers leave (at least 1), and 1 worker beside torch's default of one
    thread per core (what a user gets who only sets ``num_workers=1``). On 2 cores: (0, 2), (1, 1),
    (2, 1), (1, 2); the last two oversubscribe the cores, and only those."""
    settings = [LoaderSetting(w, max(1, cores - w)) for w in (0, 1, 2)] + [LoaderSetting(1, cores)]
    return list(dict.fromkeys(settings))


def _one_thread(worker_id: int) -> None:
    # torch's worker loop sets 1 already (torch/utils/data/_utils/worker.py); said here so it holds
    torch.set_num_threads(1)


def selfnas_optimizer(model: nn.Module, config: TrainConfig, plan: Plan) -> torch.optim.Optimizer:
    """selfnas's own weight optimizer for ``model`` (:func:`selfnas.training.builder.weight_optimizer`,
    the function the trainer calls), so the peak LR, momentum, weight decay and its exclusion of
    BatchNorm and bias parameters (``ndim <= 1``) are selfnas's by construction, not a copy."""
    if config.optim.fix_predictor_lr:  # it finds the predictor by selfnas's parameter names
        raise ValueError("optim.fix_predictor_lr is not supported for the lightly baseline")
    return weight_optimizer(model, config, plan.peak_lr, plan.weight_decay)


def train_baseline(
    model: LightlySimSiam,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    config: TrainConfig,
    plan: Plan,
    steps: int,
    loader: LoaderSetting,
    warmup_steps: int = 0,
    compile: bool = False,
    seed: int = 0,
    precision: str = "fp32",
) -> dict[str, float | int]:
    """Train ``model`` for ``steps`` steps of ``config.optim.batch_size`` pairs, as selfnas would:
    :func:`selfnas_optimizer` with the LR of :func:`warmup_cosine` at each step of ``plan``.
    ``precision="bf16"``: the forward and the loss under ``torch.autocast("cpu", torch.bfloat16)``,
    the one line a lightly user adds for it.

    The first ``warmup_steps`` steps (worker start-up, first batches, a compile) are left out of the
    timed window: ``pairs_per_s`` is over the rest; ``total_s`` includes them. The main process runs
    ``loader.threads`` intra-op threads (restored on return), each worker one."""
    if not 0 <= warmup_steps < steps:
        raise ValueError(f"warm-up of {warmup_steps} steps leaves none of {steps} to time")
    bs = config.optim.batch_size
    threads_before = torch.get_num_threads()
    torch.set_num_threads(loader.threads)
    torch.manual_seed(seed)
    batches = DataLoader(
        TwoViews(images, mean, std),
        batch_size=bs,
        shuffle=True,
        drop_last=True,
        num_workers=loader.workers,
        persistent_workers=loader.workers > 0,
        worker_init_fn=_one_thread,
    )
    model = model.to(memory_format=torch.channels_last)
    step_fn = torch.compile(model) if compile else model
    opt = selfnas_optimizer(model, config, plan)
    model.train()
    try:
        t0 = t_timed = time.perf_counter()
        pairs = chain.from_iterable(batches for _ in range(steps))  # epochs until the steps are done
        for step, (x0, x1) in zip(range(steps), pairs, strict=False):
            x0 = x0.contiguous(memory_format=torch.channels_last)  # N x C x H x W
            x1 = x1.contiguous(memory_format=torch.channels_last)
            lr = warmup_cosine(step, plan.total_steps, plan.warmup_steps, plan.peak_lr)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = step_fn(x0, x1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step + 1 == warmup_steps:
                t_timed = time.perf_counter()
        t_end = time.perf_counter()
    finally:
        torch.set_num_threads(threads_before)
    timed = steps - warmup_steps
    return {
        "steps": steps,
        "warmup_steps": warmup_steps,
        "timed_s": t_end - t_timed,
        "total_s": t_end - t0,
        "pairs_per_s": timed * bs / (t_end - t_timed),
        "precision": precision,
        **asdict(loader),
    }


def calibrate_loader(
    model: LightlySimSiam,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    config: TrainConfig,
    plan: Plan,
    candidates: list[LoaderSetting],
    warmup_steps: int = 4,
    steps: int = 8,
    compile: bool = False,
    precision: str = "fp32",
) -> tuple[LoaderSetting, list[dict[str, float | int]]]:
    """Time each candidate for ``steps`` steps after ``warmup_steps`` on a copy of ``model`` (which
    is left as it was); returns the fastest and every candidate's figures."""
    table = []
    for setting in candidates:
        run = train_baseline(
            copy.deepcopy(model), images, mean, std, config, plan, warmup_steps + steps, setting,
            warmup_steps=warmup_steps, compile=compile, precision=precision,
        )  # fmt: skip
        table.append({**asdict(setting), "pairs_per_s": round(run["pairs_per_s"], 1), "timed_steps": steps})
    best = max(table, key=lambda r: r["pairs_per_s"])
    return LoaderSetting(best["workers"], best["threads"]), table
