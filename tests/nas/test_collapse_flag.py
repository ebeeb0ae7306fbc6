"""The collapse flag of a candidate's scores (selfnas/nas/scoring.py) on borderline embeddings
whose row count N differs from their width D: the flag compares the normalised std with the
healthy 1/sqrt(D), D the embedding's width, whatever N is."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.data.augment import TwoViewAugment, augment_preset
from selfnas.nas.scoring import embedding_scores
from selfnas.training.builder import build_method
from tests.conftest import TINY

WIDTH = 16  # method.proj_out in TINY: the width the predictor expects


class NearlyConstant(nn.Module):
    """A projector whose outputs are one point plus ``spread`` times fixed seeded noise: row i of
    every batch is the same whatever the image, so the embedding's std is set by ``spread``."""

    def __init__(self, spread: float) -> None:
        super().__init__()
        noise = torch.randn(512, WIDTH, generator=torch.Generator().manual_seed(0))
        self.register_buffer("rows", 1.0 + spread * noise)
        self.out_dim = WIDTH

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.rows[: len(features)] + 0.0 * features[:, :1]


def _scores(spread: float, images: int) -> dict[str, float]:
    torch.manual_seed(0)
    data = load_dataset("synthetic")
    model = build_method(build_config(overrides=TINY), data.train.channels)
    model.projector = NearlyConstant(spread)
    augment = TwoViewAugment(*augment_preset("simsiam", data.train.size, 3), data.mean, data.std)
    return embedding_scores(model, augment, data.test.images[:images], seed=0)


@pytest.mark.parametrize(
    ("spread", "images", "low", "high", "collapsed"),
    [
        # N = 96 > D = 16: std 0.0204-0.05 is under 0.2 / sqrt(16) (collapsed), over 0.2 / sqrt(96)
        (0.14, 96, 0.025, 0.045, 1.0),
        # N = 8 < D = 16: std 0.05-0.0707 is over 0.2 / sqrt(16) (healthy), under 0.2 / sqrt(8)
        (0.265, 8, 0.054, 0.066, 0.0),
    ],
)
def test_a_borderline_embedding_is_judged_by_its_width_not_its_rows(
    single_thread, spread, images, low, high, collapsed
):
    scores = _scores(spread, images)
    assert low < scores["normalized_std"] < high  # the case sits between the two thresholds
    assert scores["collapsed"] == collapsed
