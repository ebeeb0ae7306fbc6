"""The SSL-method records are the one home of a method's data, and every reader agrees with them."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from selfnas.config import MethodConfig
from selfnas.data.augment import AugmentConfig, augment_preset
from selfnas.errors import RegistryError
from selfnas.methods import (
    METHOD_NAMES,
    METHOD_RECORDS,
    AugmentPreset,
    HeadRecipe,
    MethodRecord,
    method_record,
)
from selfnas.models import genotype
from selfnas.models.head_ops import HEAD_OPS
from selfnas.models.heads import HeadLayer, HeadSpec, default_heads
from selfnas.ssl.registry import METHODS


def test_names_are_the_records_in_order() -> None:
    assert METHOD_NAMES == ("simsiam", "simclr", "moco", "byol")
    assert all(METHOD_RECORDS[name].name == name for name in METHOD_NAMES)
    assert genotype.METHOD_NAMES is METHOD_NAMES


def test_every_record_is_registered_and_every_registered_method_has_a_record() -> None:
    assert set(METHODS.names()) == set(METHOD_NAMES)
    for name in METHOD_NAMES:
        assert METHODS.get(name).name == name
        assert METHODS.describe(name) == method_record(name).summary


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_records_are_well_formed(name: str) -> None:
    record = method_record(name)
    assert isinstance(record, MethodRecord) and isinstance(record.augment, AugmentPreset)
    assert record.summary and "\n" not in record.summary
    assert record.base_lr > 0 and record.weight_decay >= 0
    for recipe in (record.projector, record.predictor):
        if recipe is not None:
            assert isinstance(recipe, HeadRecipe) and recipe.hidden_layers >= 0
            assert recipe.hidden_op in HEAD_OPS and recipe.out_op in HEAD_OPS
    assert record.needs_predictor == (record.predictor is not None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.base_lr = 1.0  # type: ignore[misc]


def test_today_defaults() -> None:
    got = {r.name: (r.base_lr, r.weight_decay, r.needs_predictor) for r in METHOD_RECORDS.values()}
    assert got == {
        "simsiam": (0.05, 5e-4, True),
        "simclr": (0.3, 1e-4, False),
        "moco": (0.06, 5e-4, False),
        "byol": (0.06, 5e-4, True),
    }


def test_config_accepts_exactly_the_method_names() -> None:
    for name in METHOD_NAMES:
        assert MethodConfig(name=name).name == name
    assert MethodConfig().name == "simsiam"
    assert MethodConfig.model_json_schema()["properties"]["name"]["enum"] == list(METHOD_NAMES)
    for bad in ("dino", "SimSiam", ""):
        with pytest.raises(ValidationError, match="Input should be 'simsiam', 'simclr', 'moco' or 'byol'"):
            MethodConfig(name=bad)


def _spec(*layers: tuple[str, int]) -> HeadSpec:
    return HeadSpec(tuple(HeadLayer(op, dim) for op, dim in layers))


def test_default_heads_match_the_papers() -> None:
    hidden, out, pred = 512, 128, 64
    expected = {
        "simsiam": (
            _spec(("linear_bn_relu", hidden), ("linear_bn_relu", hidden), ("linear_bn_noaffine", out)),
            _spec(("linear_bn_relu", pred), ("linear", out)),
        ),
        "simclr": (_spec(("linear_bn_relu", hidden), ("linear", out)), None),
        "moco": (_spec(("linear_relu", hidden), ("linear", out)), None),
        "byol": (
            _spec(("linear_bn_relu", hidden), ("linear", out)),
            _spec(("linear_bn_relu", pred), ("linear", out)),
        ),
    }
    assert set(expected) == set(METHOD_NAMES)
    for name, heads in expected.items():
        assert default_heads(name, hidden, out, pred) == heads


def test_default_heads_follow_the_record() -> None:
    for name, record in METHOD_RECORDS.items():
        projector, predictor = default_heads(name, 20, 10, 5)
        assert len(projector.layers) == record.projector.hidden_layers + 1
        assert projector.layers[-1] == HeadLayer(record.projector.out_op, 10)
        assert (predictor is None) == (record.predictor is None)


def test_augment_preset_reads_the_record() -> None:
    byol = method_record("byol").augment
    assert byol == AugmentPreset((0.4, 0.4, 0.2, 0.1), (0.4, 0.4, 0.2, 0.1), 0.08, (1.0, 0.1), (0.0, 0.2))
    view1, view2 = augment_preset("byol", 224, 3)
    assert view1.crop_scale == (0.08, 1.0) and (view1.brightness, view1.saturation) == (0.4, 0.2)
    assert (view1.blur_p, view2.blur_p, view1.solarize_p, view2.solarize_p) == (1.0, 0.1, 0.0, 0.2)
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
