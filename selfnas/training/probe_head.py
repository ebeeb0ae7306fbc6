"""The linear head of a fine-tuning, started from the linear probe (LP-FT).

Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"
(ICLR 2022): fine-tuning from a random head sends large, noisy gradients into the pretrained
backbone in the first steps and can end below the frozen linear probe on few labels; starting the
head at the probe's solution (linear probing, then fine-tuning) avoids it. We fit the probe of
:mod:`selfnas.eval.linear` on the labeled train subset's frozen features (weight decay by
cross-validation on that subset, accuracy reported on val) and fold its feature standardisation
into the head, so the classifier's logits equal the probe's at the start of fine-tuning.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from selfnas.data.types import DatasetSplits
from selfnas.device import Precision
from selfnas.eval.features import extract_features
from selfnas.eval.linear import linear_probe, train_logreg


def fold_standardisation(
    weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``nn.Linear`` weight (K x D) and bias (K) with ``f @ W' .T + b' == ((f - mean) / std) @ W + b``
    for a probe ``W`` (D x K), ``b`` (K) fit on features standardised with ``mean`` / ``std`` (D)."""
    scaled = weight / std[:, None]  # D x K
    return scaled.T.contiguous(), bias - mean @ scaled


@torch.no_grad()
def init_head_from_probe(
    backbone: nn.Module,
    head: nn.Linear,
    data: DatasetSplits,
    normalize: Any,
    device: torch.device,
    precision: Precision = "fp32",
) -> dict[str, float]:
    """Set ``head`` to the linear probe of ``backbone``'s frozen features of ``data.train`` (labeled);
    returns ``{"probe_val": accuracy of that start on data.val, "probe_weight_decay": ...}``. The
    features are computed in ``precision`` (:func:`extract_features`), the probe in float32."""
    train, val = data.train, data.val
    assert train.labels is not None and val is not None and val.labels is not None
    feats = extract_features(backbone, train.images, normalize, device=device, precision=precision)  # N x D
    val_feats = extract_features(backbone, val.images, normalize, device=device, precision=precision)  # M x D
    k = head.out_features
    probe = linear_probe(feats, train.labels, val_feats, val.labels, k)  # CV on train; accuracy on val
    mean, std = feats.mean(dim=0), feats.std(dim=0, correction=0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    weight, bias = train_logreg((feats - mean) / std, train.labels, k, probe.weight_decay)
    w, b = fold_standardisation(weight, bias, mean, std)
    head.weight.copy_(w.to(head.weight))
    head.bias.copy_(b.to(head.bias))
    return {"probe_val": probe.accuracy, "probe_weight_decay": probe.weight_decay}
