"""Measuring scores on a candidate: every score present, the model untouched, collapse flagged."""

from __future__ import annotations

import math

import torch

from selfnas.config import build_config
from selfnas.data import load_dataset
from selfnas.data.augment import TwoViewAugment, augment_preset
from selfnas.nas.scoring import calibrated_copy, embedding_scores, size_scores, zero_cost_scores
from selfnas.score_records import family_names
from selfnas.training.builder import build_method
from tests.conftest import TINY


def _candidate():
    torch.manual_seed(0)
    data = load_dataset("synthetic")
    model = build_method(build_config(overrides=TINY), data.train.channels)
    augment = TwoViewAugment(*augment_preset("simsiam", data.train.size, 3), data.mean, data.std)
    return model, augment, data.train.images[:128], data.test.images[:96]


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_every_embedding_score_is_measured_and_the_model_is_untouched(single_thread):
    model, augment, train, held_out = _candidate()
    model.train()
    before = _state(model)
    costs: dict[str, float] = {}
    scores = embedding_scores(model, augment, held_out, seed=3, costs=costs, calibration=train)
    embedding = set(family_names("embedding"))
    assert embedding <= set(scores) and all(math.isfinite(scores[n]) for n in embedding)
    assert scores["collapsed"] == 0.0 and {"features", "calibration", "lidar"} <= set(costs)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the views are a function of the seed: the same seed measures the same values
    assert embedding_scores(model, augment, held_out, seed=3, calibration=train) == scores
    zero = zero_cost_scores(model, augment, held_out, seed=3)
    assert set(zero) == {"naswot", "synflow", "grad_norm"} and all(math.isfinite(v) for v in zero.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    size = size_scores(model, (3, 16, 16))
    assert size["params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert size["flops"] > 0


def test_calibration_recomputes_the_statistics_of_a_copy_only(single_thread):
    model, augment, train, _ = _candidate()
    conv, norm = model.backbone.stem[0], model.backbone.stem[1]
    assert torch.equal(norm.running_var, torch.ones_like(norm.running_var))  # fresh: (0, 1)
    copy_ = calibrated_copy(model, augment, train)  # 128 images: one batch
    assert torch.equal(norm.running_var, torch.ones_like(norm.running_var)) and model.training
    with torch.no_grad():  # the copy's stem BatchNorm holds the exact statistics of its input
        stem_out = conv(augment.normalize(train))  # N x C x H x W
    copied = copy_.backbone.stem[1]
    assert torch.allclose(copied.running_mean, stem_out.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(copied.running_var, stem_out.var(dim=(0, 2, 3)), rtol=1e-4)
    assert not copy_.training and copied.momentum == 0.1 and norm.momentum == 0.1  # momenta restored


def test_a_network_that_maps_every_image_to_one_point_is_collapsed(single_thread):
    model, augment, train, held_out = _candidate()
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.zero_()  # every image -> the same features -> one projector output
    scores = embedding_scores(model, augment, held_out, seed=0, calibration=train)
    assert scores["collapsed"] == 1.0 and scores["normalized_std"] < 1e-6
