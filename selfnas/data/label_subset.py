"""A seeded, class-balanced subset of the labeled train images: the labels a fine-tuning may use.

A budget is a share of the train split (``"1%"``, ``"10%"``, ``"100%"``; the semi-supervised
protocol of SimCLR and BYOL) or an int of labels per class. A share ``P%`` of ``n`` images in ``K``
classes keeps ``max(1, round(P / 100 * n / K))`` images of every class (all of a class that has
fewer); ``"100%"`` keeps the whole split. Within each class the images are taken in the order of
one seeded permutation of the split, so a smaller budget's subset is part of a larger one's with
the same seed. :meth:`LabelSubset.record` is what a run stores: budget, seed, counts per class and
a SHA-256 of the indices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from selfnas.data.types import ImageSet
from selfnas.errors import DatasetError


@dataclass(frozen=True)
class LabelSubset:
    """``index``: sorted int64 indices into the train split; ``per_class``: images kept per class name."""

    budget: str | int
    seed: int
    index: torch.Tensor
    per_class: dict[str, int]
    n_train: int

    def record(self) -> dict[str, Any]:
        """JSON-able: budget, seed, size, counts per class and the SHA-256 of the int64 indices."""
        digest = hashlib.sha256(self.index.to(torch.int64).numpy().tobytes()).hexdigest()
        return {"budget": self.budget, "seed": self.seed, "n": len(self.index), "of": self.n_train,
                "per_class": self.per_class, "sha256": digest}  # fmt: skip


def per_class_quota(budget: str | int, n: int, num_classes: int) -> int | None:
    """Images per class for ``budget`` (``"P%"`` or an int per class); None for ``"100%"`` (all)."""
    if isinstance(budget, int):
        return budget
    share = float(budget.strip().rstrip("%"))
    if share >= 100:
        return None
    return max(1, round(share / 100 * n / num_classes))


def label_subset(train: ImageSet, budget: str | int, seed: int) -> LabelSubset:
    """The class-balanced subset of ``train`` for ``budget`` (see the module doc); DatasetError when
    ``train`` has no labels, or when an int budget asks more of a class than it holds."""
    if train.labels is None:
        raise DatasetError("fine-tuning needs labels and these train images have none; name a labeled --data")
    labels, n, k = train.labels, len(train), train.num_classes
    names = train.classes or tuple(str(c) for c in range(k))
    quota = per_class_quota(budget, n, k)
    counts = torch.bincount(labels, minlength=k)
    if quota is None:
        index = torch.arange(n)
    else:
        if isinstance(budget, int) and int(counts.min()) < quota:
            short = int(counts.argmin())
            raise DatasetError(
                f"class {names[short]!r} has {int(counts[short])} labeled train images, fewer than the "
                f"{quota} per class asked; ask for at most {int(counts.min())} labels per class"
            )
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        index = torch.cat([perm[labels[perm] == c][:quota] for c in range(k)]).sort().values
    kept = torch.bincount(labels[index], minlength=k)
    return LabelSubset(budget, seed, index, {names[c]: int(kept[c]) for c in range(k)}, n)
