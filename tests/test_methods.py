"""The SSL-method records are the one home of a method's data, and what is built from them behaves
as the method's paper says: every configured method trains, its heads normalise (or not) as the
paper's do, its optimisation defaults reach the optimizer, and its readers agree with it."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from selfnas.config import MethodConfig, build_config
from selfnas.data.augment import AugmentConfig, augment_preset
from selfnas.errors import RegistryError
from selfnas.methods import METHOD_NAMES, METHOD_RECORDS, method_record
from selfnas.models.heads import HeadLayer, default_heads
from selfnas.ssl.registry import METHODS
from selfnas.training.builder import build_method, weight_optimizer
from selfnas.training.trainer import make_plan

#: a small backbone and heads: a model builds and steps in milliseconds
SMALL = ["model.backbone_kwargs={width: 8, depths: [1, 1]}", "method.proj_hidden=32", "method.proj_out=16",
         "method.pred_hidden=8"]  # fmt: skip


def _model(name: str, *extra: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_method(build_config(overrides=[*SMALL, f"method.name={name}", *extra]), in_channels=1)


# -- every configured method trains ---------------------------------------------------------


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_configured_method_builds_and_takes_a_finite_step(name: str) -> None:
    """The config accepts the name, the builder makes the method of that name with a predictor
    exactly when its record has one, and a step on two views gives a finite loss and gradients."""
    model = _model(name)
    assert model.name == name
    assert (model.predictor is not None) == method_record(name).needs_predictor
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(8, 1, 16, 16, generator=g), torch.randn(8, 1, 16, 16, generator=g)
    out = model(x1, x2)
    out.loss.backward()
    assert math.isfinite(float(out.loss)) and out.embedding.shape == (8, 16)
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# -- the heads behave as the papers' heads do -----------------------------------------------


def _project(model: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    model.train()
    with torch.no_grad():
        return model.projector(features)


def test_simsiam_projector_output_is_batch_normalised_without_a_learnable_scale() -> None:
    """SimSiam ends its projector in BatchNorm without affine: each output feature has mean 0 and
    variance 1 over the batch in training mode, whatever the last layer's parameters hold."""
    model = _model("simsiam")
    for p in model.projector[-1].parameters():
        p.data.mul_(3.0).add_(0.5)  # a learnable scale or shift would move the statistics
    z = _project(model, torch.randn(64, model.backbone.out_dim, generator=torch.Generator().manual_seed(2)))
    assert torch.allclose(z.mean(0), torch.zeros(16), atol=1e-5)
    assert torch.allclose(z.var(0, unbiased=False), torch.ones(16), atol=1e-3)


@pytest.mark.parametrize("name, batch_dependent", [("simsiam", True), ("simclr", True), ("byol", True),
                                                   ("moco", False)])  # fmt: skip
def test_only_moco_projects_each_image_on_its_own(name: str, batch_dependent: bool) -> None:
    """MoCo v2's projector has no BatchNorm (Linear-ReLU-Linear): in training mode an image's
    projection does not depend on the other images of the batch; the others' heads normalise
    over the batch, so it does."""
    model = _model(name)
    features = torch.randn(16, model.backbone.out_dim, generator=torch.Generator().manual_seed(3))
    alone = _project(model, features[:8])[0]
    with_others = _project(model, torch.cat([features[:8], 5 * features[8:] + 2]))[0]
    assert (not torch.allclose(alone, with_others, atol=1e-5)) == batch_dependent


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_a_predictor_maps_the_projection_to_its_own_width(name: str) -> None:
    """The predictor reads the projector's output (``proj_out`` wide) through ``pred_hidden`` and
    answers in ``proj_out`` features; its bottleneck is the configured ``pred_hidden``."""
    model = _model(name, "method.pred_hidden=3")
    model.train()
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert model.predictor(z).shape == (8, 16)
    first = next(m for m in model.predictor.modules() if isinstance(m, torch.nn.Linear))
    assert first.out_features == 3


# -- the optimisation defaults reach the optimizer -------------------------------------------


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_a_method_trains_at_its_own_lr_and_weight_decay_unless_the_config_sets_them(name: str) -> None:
    """Without ``optim.lr`` / ``optim.weight_decay`` a run uses the method's per-256-image LR,
    scaled to the batch, and its weight decay on the weights (none on biases and BatchNorm);
    a configured value wins."""
    record = method_record(name)
    config = build_config(overrides=[*SMALL, f"method.name={name}", "optim.batch_size=128"])
    plan = make_plan(config, n_train=1024)
    assert plan.peak_lr == pytest.approx(record.base_lr * 128 / 256)
    optimizer = weight_optimizer(_model(name), config, plan.peak_lr, plan.weight_decay)
    decays = {(group["weight_decay"], group["lr"]) for group in optimizer.param_groups if group["params"]}
    assert decays == {(record.weight_decay, plan.peak_lr), (0.0, plan.peak_lr)}
    mine = build_config(overrides=[*SMALL, f"method.name={name}", "optim.batch_size=128", "optim.lr=0.2",
                                   "optim.weight_decay=0.01"])  # fmt: skip
    plan = make_plan(mine, n_train=1024)
    assert (plan.peak_lr, plan.weight_decay) == (pytest.approx(0.1), 0.01)


# -- the readers agree with the records -----------------------------------------------------


def test_every_record_is_registered_and_every_registered_method_has_a_record() -> None:
    assert set(METHODS.names()) == set(METHOD_NAMES)
    for name in METHOD_NAMES:
        assert METHODS.get(name).name == name
        assert METHODS.describe(name) == method_record(name).summary


def test_config_accepts_exactly_the_method_names() -> None:
    for name in METHOD_NAMES:
        assert MethodConfig(name=name).name == name
    assert MethodConfig().name == "simsiam"
    assert MethodConfig.model_json_schema()["properties"]["name"]["enum"] == list(METHOD_NAMES)
    for bad in ("dino", "SimSiam", ""):
        with pytest.raises(ValidationError, match="Input should be 'simsiam', 'simclr', 'moco' or 'byol'"):
            MethodConfig(name=bad)


def test_default_heads_follow_the_record() -> None:
    for record in METHOD_RECORDS.values():
        projector, predictor = default_heads(record, 20, 10, 5)
        assert len(projector.layers) == record.projector.hidden_layers + 1
        assert projector.layers[-1] == HeadLayer(record.projector.out_op, 10)
        assert (predictor is None) == (record.predictor is None)


def test_augment_preset_reads_the_record() -> None:
    byol = method_record("byol").augment
    view1, view2 = augment_preset("byol", 224, 3)
    assert view1.crop_scale == (byol.crop_min, 1.0)
    assert (view1.brightness, view1.contrast, view1.saturation, view1.hue) == byol.jitter
    assert (view1.blur_p, view2.blur_p) == byol.blur_p and (
        view1.solarize_p,
        view2.solarize_p,
    ) == byol.solarize_p
    simclr = method_record("simclr").augment
    small, _ = augment_preset("simclr", 32, 3)
    large, _ = augment_preset("simclr", 224, 3)
    assert (small.brightness, small.contrast, small.saturation, small.hue) == simclr.jitter_small
    assert (large.brightness, large.contrast, large.saturation, large.hue) == simclr.jitter
    assert large.crop_scale == (simclr.crop_min, 1.0) and small.crop_scale == (0.2, 1.0)
    assert small.blur_p == 0.0 and large.blur_p == simclr.blur_p[0]
    assert isinstance(small, AugmentConfig)


@pytest.mark.parametrize("bad", ["dino", "", "SimSiam", None])
def test_unknown_name_is_one_line(bad: object) -> None:
    with pytest.raises(RegistryError) as info:
        method_record(bad)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown SSL method") and "simsiam, simclr, moco, byol" in message
