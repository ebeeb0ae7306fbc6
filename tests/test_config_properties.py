"""Property tests of the config parser: whatever a user types, the only failure is a ConfigError,
and every valid config survives the trip through ``config.yaml``.

(The genotype parsers and the IDX reader have their own fuzz tests: tests/models/test_genotype.py,
tests/models/test_cell_genotype.py, tests/data/test_idx.py.)
"""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfnas.config import (
    HEAD_SEARCH_OPS,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SearchConfig,
    apply_override,
    build_config,
    config_to_yaml,
    read_config_file,
)
from selfnas.errors import ConfigError

SECTIONS = ["data", "model", "method", "optim", "run", "search"]
FIELDS = [f for model in (DataConfig, ModelConfig, MethodConfig, OptimConfig, RunConfig, SearchConfig)
          for f in model.model_fields]  # fmt: skip

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# keys drawn mostly from the real sections and fields, so that validation goes deep
real_key = st.sampled_from(SECTIONS) | st.text(max_size=10)
nested = st.dictionaries(
    real_key,
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_like, max_size=5) | json_like,
    max_size=4,
)
key_text = st.lists(st.sampled_from(SECTIONS + FIELDS) | st.text(max_size=8), min_size=0, max_size=4).map(
    ".".join
)
value_text = st.text(max_size=40) | json_like.map(
    lambda v: yaml.safe_dump(v, default_flow_style=True).strip()
)
override_text = st.text(max_size=60) | st.tuples(key_text, value_text).map("=".join)

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_config_errors(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        return None


@PROPERTY
@given(nested)
def test_random_nested_dicts_raise_only_config_errors(data):
    cfg = _only_config_errors(build_config, base=data)
    if cfg is not None:  # whatever validated also round-trips
        assert build_config(base=yaml.safe_load(config_to_yaml(cfg))) == cfg


@PROPERTY
@given(st.lists(override_text, max_size=4))
def test_random_overrides_raise_only_config_errors(overrides):
    data: dict = {}
    for override in overrides:
        _only_config_errors(apply_override, data, override)
    _only_config_errors(build_config, overrides=overrides)


@pytest.mark.parametrize(
    "raw",
    ["[" * 5000, "{a: " * 3000, "&a [*a]", "[&a [1, 2, 3], &b [*a, *a, *a], &c [*b, *b, *b]]",
     "2001-12-14", "!!binary aGVsbG8=", "!!python/object/apply:os.system [ls]", "{a: 2001-12-14}"],
)  # fmt: skip
def test_hostile_yaml_values_are_config_errors_or_plain_text(raw):
    data: dict = {}
    _only_config_errors(apply_override, data, f"model.backbone_kwargs={raw}")
    _only_config_errors(build_config, base=data)
    if "model" in data:
        value = data["model"]["backbone_kwargs"]
        assert isinstance(value, str | list | dict)  # dates and bytes never get through


def test_deep_or_exotic_config_files_are_one_line(tmp_path):
    cases = {
        "deep.yaml": "a: " + "[" * 5000,
        "date.toml": "[data]\nname = 2001-12-14\n",
        "bomb.yaml": "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
        + "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True)
        ),
        "tags.yaml": "run: !!python/object/apply:os.system [touch PWNED]\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            read_config_file(path)
        assert "\n" not in str(err.value), name
    assert not (tmp_path / "PWNED").exists()


# -- valid configs round-trip ----------------------------------------------------------------

finite = {"allow_nan": False, "allow_infinity": False}
valid_overrides = st.fixed_dictionaries(
    {
        "data.name": st.sampled_from(["synthetic", "fashion-mnist", "digits@16", "imagefolder:/tmp/x y@32"])
        | st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20).filter(
            lambda s: s.strip()
        ),
        "data.val_fraction": st.floats(0.0, 0.999, **finite),
        "data.train_limit": st.none() | st.integers(1, 10**9),
        "method.name": st.sampled_from(["simsiam", "simclr", "moco", "byol"]),
        "method.hparams": st.dictionaries(
            st.sampled_from(["temperature", "momentum", "queue_size"]),
            st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6, **finite),
        ),
        "optim.epochs": st.floats(1e-6, 10000, **finite),
        "optim.batch_size": st.integers(2, 65536),
        "optim.lr": st.none() | st.floats(1e-12, 100, **finite).filter(lambda x: x > 0),
        "optim.optimizer": st.sampled_from(["sgd", "adamw"]),
        "optim.momentum": st.floats(0, 0.999, **finite),
        "run.seed": st.integers(0, 2**31 - 1),
        "run.device": st.sampled_from(["auto", "cpu", "cuda", "cuda:1"]),
        "run.threads": st.none() | st.integers(1, 1024),
        "model.backbone_kwargs": st.dictionaries(
            st.text(min_size=1, max_size=8), json_like, max_size=3
        ).filter(lambda d: all(not isinstance(v, float) or math.isfinite(v) for v in _leaves(d))),
        "search": st.none()
        | st.fixed_dictionaries(
            {
                "space": st.sampled_from(["heads", "cells", "resnet-variants", "mobilenet-variants"]),
                "strategy": st.sampled_from(["darts", "tpe", "random", "evolution"]),
                "arch_lr": st.floats(1e-9, 1, **finite).filter(lambda x: x > 0),
                "ops": st.lists(st.sampled_from(HEAD_SEARCH_OPS), min_size=1, max_size=8),
                "storage": st.none() | st.sampled_from(["journal:/tmp/j.log", "postgresql://u@h/db"]),
                "study_name": st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
                "entropy_stop": st.none() | st.floats(1e-6, 10, **finite),
            }
        ),
    }
)


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _nest(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        section, _, field = key.partition(".")
        if field:
            out.setdefault(section, {})[field] = value
        else:
            out[section] = value
    return out


@PROPERTY
@given(valid_overrides)
def test_valid_configs_round_trip_through_yaml(flat):
    cfg = build_config(base=_nest(flat))
    text = config_to_yaml(cfg)
    again = build_config(base=yaml.safe_load(text))
    assert again == cfg
    assert config_to_yaml(again) == text


@PROPERTY
@given(valid_overrides)
def test_valid_values_round_trip_through_set_overrides(flat):
    """``--set key=<value as YAML>`` gives the same config as the values themselves."""
    overrides = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                 for k, v in flat.items()]  # fmt: skip
    assert build_config(overrides=overrides) == build_config(base=_nest(flat))


@settings(max_examples=50, deadline=None)
@given(valid_overrides)
def test_valid_configs_round_trip_through_a_file(tmp_path_factory, flat):
    cfg = build_config(base=_nest(flat))
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(config_to_yaml(cfg))
    assert build_config(path) == cfg
