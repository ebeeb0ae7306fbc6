"""Label-free scores of one candidate SSL model, measured on held-out images without their labels.

Two families (see ``docs/ARCHITECTURE.md`` for where each score function lives):

- **Embedding scores** of the backbone's features, at any point of training: the SSL loss on two
  seeded views, RankMe (raw and divided by min(N, D)), alpha-ReQ, LiDAR, alignment, uniformity,
  view retrieval, and the normalised std that flags collapse.
- **Zero-cost scores** of the network at initialisation: NASWOT, SynFlow, grad-norm of the SSL
  loss. Plus the baselines every score must beat: parameter count and FLOPs per image.

Measuring leaves the model as it found it (mode, weights, BatchNorm statistics, gradients), so
scores read from a training run at some step cost no extra training and change nothing after.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from selfnas.data.augment import TwoViewAugment
from selfnas.eval.scores import alignment, normalized_std, rankme, uniformity
from selfnas.eval.spectral import alpha_req, alpha_req_distance, lidar, rankme_normalized, view_retrieval
from selfnas.eval.zero_cost import flops_per_image, grad_norm, naswot, param_count, synflow
from selfnas.models.precise_bn import recompute_batchnorm
from selfnas.score_records import BASELINE_SCORES, SCORE_RECORDS
from selfnas.score_records import EMBEDDING_SCORES as EMBEDDING_SCORES  # the families it measures
from selfnas.score_records import ZERO_COST_SCORES as ZERO_COST_SCORES
from selfnas.ssl.base import SSLMethod
from selfnas.training.monitor import COLLAPSE_RATIO

#: score -> +1 when higher is better, -1 when lower is better, 0 when neither (alpha_req: reported
#: only; alpha_req_distance is the one with a direction); what a search maximises: sign * score.
#: Read from the score records, the one home of these facts.
DIRECTION: dict[str, float] = {r.name: float(r.direction) for r in SCORE_RECORDS}
#: the size baselines, as the score records hold them
BASELINES = BASELINE_SCORES
LIDAR_VIEWS = 4  # augmentations per surrogate class (image)
LIDAR_IMAGES = 256
ZERO_COST_BATCH = 128


def _finite(
    fn: Callable[..., float], *args: Any, costs: dict[str, float] | None = None, name: str = ""
) -> float:
    """``fn(*args)`` as a float, nan when the representation diverged; its seconds go to ``costs``."""
    start = time.perf_counter()
    try:
        value = float(fn(*args))
    except ValueError:  # non-finite embeddings: the candidate diverged
        value = math.nan
    if costs is not None:
        costs[name or fn.__name__] = round(time.perf_counter() - start, 4)
    return value if math.isfinite(value) else math.nan


@torch.no_grad()
def embedding_scores(
    model: SSLMethod,
    augment: TwoViewAugment,
    images: torch.Tensor,
    seed: int,
    batch: int = 256,
    costs: dict[str, float] | None = None,
    calibration: torch.Tensor | None = None,
) -> dict[str, float]:
    """Every embedding score of ``model`` on uint8 ``images`` (N x C x H x W, on the model's device),
    plus ``normalized_std`` and ``collapsed`` of the projector outputs, the trainer's collapse
    monitor (SimSiam's): 1.0 when the std of the l2-normalised outputs is below
    :data:`COLLAPSE_RATIO` of the healthy 1/sqrt(D) (raw backbone features are non-negative after
    their last ReLU, so their normalised std is small even when healthy: they are not the test).
    Views are drawn from ``seed``; nan marks a score of a diverged (non-finite) representation.
    ``costs`` receives the seconds of the shared forward passes (``features``, ``ssl_loss``,
    ``lidar_views``, ``calibration``) and of each score.

    ``calibration`` (uint8 training images): measure a copy of the model whose BatchNorm running
    statistics are recomputed on them (see :func:`calibrated_copy`); the model is not touched."""
    costs = {} if costs is None else costs
    start = time.perf_counter()
    if calibration is not None:
        model = calibrated_copy(model, augment, calibration, batch)
        costs["calibration"] = round(time.perf_counter() - start, 4)
        start = time.perf_counter()
    was_training = model.training
    model.eval()
    backbone = model.backbone
    g = torch.Generator().manual_seed(seed)
    try:
        chunks = [b for b in images.split(batch) if len(b) > 1]
        clean = torch.cat([backbone(augment.normalize(b)).flatten(1) for b in chunks])  # N x D
        costs["features"] = round(time.perf_counter() - start, 4)
        start = time.perf_counter()
        losses, outputs, z1, z2 = [], [], [], []
        for b in chunks:
            v1, v2 = augment(b, g)
            step = model(v1, v2)
            losses.append(float(step.loss))
            outputs.append(step.embedding.flatten(1))  # the projector output the trainer monitors
            z1.append(backbone(v1).flatten(1))
            z2.append(backbone(v2).flatten(1))
        a, b = torch.cat(z1), torch.cat(z2)  # N x D each
        costs["ssl_loss"] = round(time.perf_counter() - start, 4)  # the two views' features included
        start = time.perf_counter()
        k = min(LIDAR_IMAGES, len(images))
        views = torch.stack(
            [backbone(v).flatten(1) for _ in range(LIDAR_VIEWS // 2) for v in augment(images[:k], g)], dim=1
        )  # K x Q x D
        costs["lidar_views"] = round(time.perf_counter() - start, 4)
    finally:
        model.train(was_training)
    embedding = torch.cat(outputs)  # N x D' projector outputs of the first views
    std = _finite(normalized_std, embedding)
    out = {"ssl_loss": sum(losses) / len(losses)}
    for name, fn, args in (
        ("rankme", rankme, (clean,)),
        ("rankme_normalized", rankme_normalized, (clean,)),
        ("alpha_req", alpha_req, (clean,)),
        ("alpha_req_distance", alpha_req_distance, (clean,)),
        ("lidar", lidar, (views,)),
        ("alignment", alignment, (a, b)),
        ("uniformity", uniformity, (a,)),
        ("view_retrieval", view_retrieval, (a, b)),
    ):
        out[name] = _finite(fn, *args, costs=costs, name=name)
    out["normalized_std"] = std
    out["collapsed"] = float(not (std * math.sqrt(embedding.shape[1]) >= COLLAPSE_RATIO))  # nan counts too
    return out


@torch.no_grad()
def calibrated_copy(
    model: SSLMethod, augment: TwoViewAugment, images: torch.Tensor, batch: int = 256
) -> SSLMethod:
    """A copy of ``model`` whose backbone and projector BatchNorm statistics are the exact average
    over the clean ``images`` (uint8 N x C x H x W), as one-shot NAS recalibrates a subnetwork.

    After a few steps the running statistics still mostly hold their initial (0, 1): evaluation
    mode then shrinks a deep network's activations layer by layer, and a barely trained candidate
    looks collapsed although it is not (seen: a 15-block MobileNetV2 variant after 7 steps,
    features constant to 1e-4 in eval mode, healthy in train mode)."""
    copy_ = copy.deepcopy(model)
    network = torch.nn.Sequential(copy_.backbone, torch.nn.Flatten(1), copy_.projector)
    recompute_batchnorm(network, (augment.normalize(b) for b in images.split(batch)))
    return copy_.eval()


def zero_cost_scores(
    model: SSLMethod,
    augment: TwoViewAugment,
    images: torch.Tensor,
    seed: int,
    costs: dict[str, float] | None = None,
) -> dict[str, float]:
    """NASWOT and SynFlow of the backbone, grad-norm of the SSL loss on one batch of two views;
    measured on a copy, so the model (weights, statistics, gradients) is untouched."""
    probe = copy.deepcopy(model)
    batch = images[:ZERO_COST_BATCH]
    x = augment.normalize(batch)  # B x C x S x S
    g = torch.Generator().manual_seed(seed)
    v1, v2 = augment(batch, g)
    probe.train()
    return {
        "naswot": _finite(naswot, probe.backbone, x, costs=costs, name="naswot"),
        "synflow": _finite(synflow, probe.backbone, tuple(x.shape[1:]), costs=costs, name="synflow"),
        "grad_norm": _finite(grad_norm, lambda: probe(v1, v2).loss, probe, costs=costs, name="grad_norm"),
    }


def size_scores(model: SSLMethod, input_shape: tuple[int, int, int]) -> dict[str, float]:
    """The baselines: trainable parameters of the whole SSL model, FLOPs per image of backbone and
    projector (what a downstream user runs, plus the head a head search changes)."""
    encoder = torch.nn.Sequential(model.backbone, torch.nn.Flatten(1), model.projector)
    return {
        "params": float(param_count(model)),
        "flops": float(flops_per_image(copy.deepcopy(encoder), input_shape)),
    }
