"""The method spec (:mod:`selfnas.methods`): a method's name is resolved once, where the config is
read, and the record gives its class every hyper-parameter, typed, with the record's defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfnas.config import build_config
from selfnas.errors import ConfigError
from selfnas.methods import BYOL, METHOD_RECORDS, MOCO, SIMCLR, SIMSIAM, MethodRecord
from selfnas.models.heads import default_heads
from selfnas.ssl.registry import create_method
from selfnas.training.builder import build_method


class _Backbone(nn.Module):
    out_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)[:, :4])


def _create(spec: MethodRecord, **hparams: object) -> nn.Module:
    projector, predictor = default_heads(spec, 16, 12, 6)
    return create_method(spec, _Backbone(), projector, predictor, **hparams)


def _hparams_of(model: nn.Module) -> dict[str, float]:
    """The hyper-parameters as the built model holds them."""
    if model.name == "moco":
        return {"temperature": model.temperature, "momentum": model.key_encoder.base,
                "queue_size": model.queue.shape[0]}  # fmt: skip
    if model.name == "byol":
        return {"momentum": model.target.base}
    if model.name == "simclr":
        return {"temperature": model.temperature}
    return {}


@pytest.mark.parametrize("spec", METHOD_RECORDS.values(), ids=METHOD_RECORDS)
def test_a_method_built_without_hyper_parameters_has_its_records_defaults(spec: MethodRecord) -> None:
    model = _create(spec)
    assert _hparams_of(model) == spec.defaults
    assert model.paper_per_view_bn is spec.per_view_bn and type(model).__name__ == spec.class_name


def test_given_hyper_parameters_reach_the_model_over_the_defaults() -> None:
    model = _create(MOCO, queue_size=32, temperature=1)
    assert _hparams_of(model) == {"temperature": 1.0, "momentum": 0.99, "queue_size": 32}
    assert isinstance(model.temperature, float)
    assert _hparams_of(_create(BYOL, momentum=0.9)) == {"momentum": 0.9}


def test_hparams_are_typed_and_complete() -> None:
    assert MOCO.hparams({"queue_size": 128.0}) == {"temperature": 0.2, "momentum": 0.99, "queue_size": 128}
    assert isinstance(MOCO.hparams({"queue_size": 128.0})["queue_size"], int)
    assert SIMSIAM.hparams({}) == {}


@pytest.mark.parametrize(
    "spec, given, says",
    [
        (SIMCLR, {"tau": 0.1}, "simclr: it has no 'tau' (its hyper-parameters: temperature)"),
        (SIMSIAM, {"momentum": 0.9}, "simsiam: it has no 'momentum' (its hyper-parameters: none)"),
        (MOCO, {"queue_size": 1.5}, "moco: queue_size must be an integer, got '1.5'"),
        (BYOL, {"momentum": True}, "byol: momentum must be a number, got 'True'"),
    ],
)
def test_a_bad_hyper_parameter_is_one_line_naming_it(spec: MethodRecord, given: dict, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        _create(spec, **given)
    message = str(info.value)
    assert message == f"bad hyper-parameters for {says}" + (
        "; fix method.hparams" if "has no" in says else ""
    )
    assert "\n" not in message


@pytest.mark.parametrize("name", METHOD_RECORDS)
def test_the_config_resolves_the_name_into_the_record_the_model_is_built_from(name: str) -> None:
    config = build_config(
        overrides=[
            f"method.name={name}",
            "model.backbone_kwargs={width: 8, depths: [1, 1]}",
            "method.proj_hidden=16",
            "method.proj_out=8",
            "method.pred_hidden=4",
        ]  # fmt: skip
    )
    assert config.method.spec is METHOD_RECORDS[name]
    torch.manual_seed(0)
    model = build_method(config, in_channels=1)
    assert type(model).spec is config.method.spec
    assert (model.predictor is not None) == config.method.spec.needs_predictor
