"""Weighted k-nearest-neighbour classifier on frozen features (InstDisc / SimSiam monitor style)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from selfnas.errors import DatasetError


def effective_k(k: int, n_bank: int) -> int:
    """The number of neighbours a kNN vote over a bank of ``n_bank`` features really uses:
    ``min(k, n_bank)`` (at least 1).

    A ``k`` beyond the bank cannot be honoured, and it is not a harmless clip: with ``k`` at or
    above the bank size every query is voted on by the whole bank, most of it from other classes,
    so the accuracy drops (k = 200 on a small bank, e.g. fewer than 200 train images per class,
    reports a depressed number that says more about the bank than about the features). The k is
    therefore not tuned here (tuning it would select on held-out data) but recorded next to every
    accuracy (``knn_k`` in ``eval.json``), so such a result can be recognised and compared only
    with results of the same k. Where ``k <= n_bank`` nothing changes.
    """
    return max(1, min(k, n_bank))


def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor | None,
    query_feats: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Class scores of each query from its ``k`` most cosine-similar training features.

    train_feats: N x D; train_labels: int, N, values in [0, num_classes); query_feats: M x D.
    Each neighbour votes for its class with weight ``exp(cos_sim / temperature)``.
    ``k`` is clipped to N (:func:`effective_k`, which says why callers record it). Neighbours
    tied at the k-th similarity are taken in order of training index, so results do not depend
    on ``chunk_size`` or the top-k kernel.
    Queries are processed ``chunk_size`` at a time (peak memory ~ chunk_size x N floats);
    ``progress(done, M)`` is called before the first chunk and after each.
    Returns float32, M x num_classes, on ``train_feats.device``.
    """
    if train_labels is None:
        raise DatasetError("kNN evaluation needs labels for the training features, but they are None")
    if train_feats.ndim != 2 or query_feats.ndim != 2 or train_feats.shape[1] != query_feats.shape[1]:
        raise ValueError(
            f"features must be N x D and M x D, got {tuple(train_feats.shape)} and {tuple(query_feats.shape)}"
        )
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(
            f"train_labels must have shape ({train_feats.shape[0]},), got {tuple(train_labels.shape)}"
        )
    if train_feats.shape[0] == 0:
        raise DatasetError("kNN evaluation needs at least one training feature")
    if k < 1 or temperature <= 0 or chunk_size < 1:
        raise ValueError(
            f"need k >= 1, temperature > 0, chunk_size >= 1; got {k}, {temperature}, {chunk_size}"
        )
    device = train_feats.device
    labels = train_labels.to(device=device, dtype=torch.long)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"train_labels must lie in [0, {num_classes})")
    k = effective_k(k, train_feats.shape[0])
    bank = F.normalize(train_feats.to(torch.float32), dim=1)
    scores = []
    total = query_feats.shape[0]
    if progress is not None:
        progress(0, total)
    with torch.inference_mode():
        for start in range(0, total, chunk_size):
            query = F.normalize(query_feats[start : start + chunk_size].to(device, torch.float32), dim=1)
            sim = query @ bank.T
            top_sim, top_idx = _topk_lowest_index_on_ties(sim, k)
            weights = (top_sim / temperature).exp()
            chunk_scores = torch.zeros(query.shape[0], num_classes, device=device)
            scores.append(chunk_scores.scatter_add_(1, labels[top_idx], weights))
            if progress is not None:
                progress(min(start + chunk_size, total), total)
    return torch.cat(scores) if scores else torch.zeros(0, num_classes, device=device)


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor | None,
    query_feats: torch.Tensor,
    query_labels: torch.Tensor | None,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
    progress: Callable[[int, int], None] | None = None,
) -> float:
    """Top-1 accuracy in [0, 1] of :func:`knn_predict` (``progress`` as there); score ties go to
    the lower class index."""
    if query_labels is None:
        raise DatasetError("kNN evaluation needs labels for the query features, but they are None")
    if query_labels.shape != (query_feats.shape[0],) or query_feats.shape[0] == 0:
        raise ValueError(f"query_labels must have shape ({query_feats.shape[0]},) with at least one query")
    scores = knn_predict(
        train_feats, train_labels, query_feats, num_classes, k, temperature, chunk_size, progress
    )
    predicted = scores.argmax(dim=1).cpu()
    return (predicted == query_labels.cpu().long()).float().mean().item()


def _topk_lowest_index_on_ties(sim: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row of ``sim`` (B x N), ties at the k-th value resolved toward lower column
    indices. Returns values and indices, each B x k (order within a row is unspecified)."""
    top_sim, top_idx = sim.topk(k, dim=1)
    kth = top_sim[:, -1:]
    ambiguous = (sim >= kth).sum(dim=1) > k
    if ambiguous.any():
        rows = sim[ambiguous]
        row_kth = kth[ambiguous]
        above = rows > row_kth
        tied = rows == row_kth
        room = k - above.sum(dim=1, keepdim=True)
        chosen = above | (tied & (tied.cumsum(dim=1) <= room))
        fixed_idx = chosen.nonzero()[:, 1].view(-1, k)
        top_idx[ambiguous] = fixed_idx
        top_sim[ambiguous] = rows.gather(1, fixed_idx)
    return top_sim, top_idx
