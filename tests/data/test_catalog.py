"""One lookup for every data name: scenario names work wherever a dataset name does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import selfnas.training.trainer as trainer_module
from selfnas import api
from selfnas.config import build_config
from selfnas.data import data_names, describe_data, load_dataset
from selfnas.data.datasets import DATA_ROOT_ENV, DATASETS
from selfnas.data.scenarios import COARSE_CLASSES, load_scenario, pretraining_splits
from selfnas.data.splits import limit_images
from selfnas.data.types import DatasetSplits
from selfnas.errors import DatasetError, RegistryError
from selfnas.evaluation import evaluate
from tests.conftest import TINY, needs_fashion_mnist, run_cli


@pytest.fixture(autouse=True)
def no_data_root_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's SELFNAS_DATA_ROOT must not change what these tests load."""
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)


def test_names_list_the_datasets_then_the_scenario_only_names() -> None:
    names = data_names()
    assert names[: len(DATASETS)] == DATASETS.names()
    assert names[len(DATASETS) :] == [
        "fashion-coarse",
        "fashion-fewshot",
        "fashion-rotated",
        "fashion-inverted",
    ]
    assert describe_data("fashion-rotated").startswith("scenario: ") and "rotated" in describe_data(
        "fashion-rotated"
    )
    assert describe_data("fashion-mnist") == DATASETS.describe("fashion-mnist")  # both: the dataset


def test_unknown_name_lists_both_registries_in_one_line() -> None:
    with pytest.raises(RegistryError) as info:
        load_dataset("imagenet-22k")
    message = str(info.value)
    assert "\n" not in message and message.startswith("unknown dataset 'imagenet-22k'")
    assert "synthetic" in message and "imagefolder" in message  # the datasets
    assert "fashion-rotated" in message and "fashion-fewshot" in message  # the scenarios


@pytest.mark.parametrize(
    ("spec", "fragment"), [("fashion-rotated:/tmp", "takes no path"), ("fashion-coarse@2", "between")]
)
def test_bad_scenario_specs_are_one_line_dataset_errors(spec: str, fragment: str) -> None:
    with pytest.raises(DatasetError, match=fragment) as info:
        load_dataset(spec)
    assert "\n" not in str(info.value)


def test_a_name_in_both_registries_keeps_the_dataset_meaning() -> None:
    data = load_dataset("digits", val_fraction=0.0)
    assert data.train.size == 16 and len(data.train) == 1438  # the dataset: 16 px; the scenario is 28 px
    assert load_scenario("digits").train.size == 28


@needs_fashion_mnist
def test_scenario_only_name_loads_the_labeled_probe_splits() -> None:
    data = load_dataset("fashion-coarse", seed=2)
    scenario = load_scenario("fashion-coarse", seed=2)
    assert data.name == "fashion-coarse" and data.val is None
    assert data.train.classes == data.test.classes == COARSE_CLASSES
    assert torch.equal(data.train.images, scenario.train.images)
    assert torch.equal(data.train.labels, scenario.train.labels)
    assert torch.equal(data.test.labels, scenario.test.labels)
    pretraining = load_dataset("fashion-coarse", seed=2, pretraining=True)
    assert (data.mean, data.std) == (pretraining.mean, pretraining.std)  # evaluated as trained
    small = load_dataset("fashion-coarse@20", seed=2, train_limit=50)
    assert small.train.images.shape == (50, 1, 20, 20) and small.train.labeled


@needs_fashion_mnist
def test_pretraining_view_is_every_image_without_labels() -> None:
    data = load_dataset("fashion-fewshot", seed=1, val_fraction=0.1, pretraining=True)
    assert not data.train.labeled and not data.val.labeled
    assert len(data.train) + len(data.val) == 60_000 and len(data.val) == 6000  # 100 labeled + the rest
    assert data.test.labeled and len(data.test) == 10_000
    probe = load_dataset("fashion-fewshot", seed=1)
    assert torch.bincount(probe.train.labels).tolist() == [10] * 10  # the few labels, for the probe


def test_datasets_command_lists_the_scenarios() -> None:
    out = run_cli("datasets", check=True).stdout
    assert "fashion-rotated" in out and "scenario:" in out and "synthetic" in out


@needs_fashion_mnist
def test_training_on_a_scenario_name_trains_on_its_images_and_evaluates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, single_thread: None
) -> None:
    loaded: list[DatasetSplits] = []
    load = trainer_module.load_config_data

    def spy(*args, **kwargs) -> DatasetSplits:
        loaded.append(load(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(trainer_module, "load_config_data", spy)
    overrides = [o for o in TINY if not o.startswith("data.name=")]
    cfg = build_config(
        overrides=[
            *overrides, "data.name=fashion-rotated", "data.train_limit=128", "optim.epochs=1",
            "run.eval_train_limit=200", "run.eval_test_limit=200",
        ]
    )  # fmt: skip
    out = tmp_path / "run"
    trained = api.train(cfg, out=out, quiet=True)  # ends with the evaluation on the labeled splits
    (data,) = loaded
    plain = pretraining_splits(load_scenario("fashion-mnist", seed=0), val_fraction=0.1, seed=0)
    expected = limit_images(plain.train, 128, seed=0)
    assert data.train.images.shape == (128, 1, 28, 28) and not data.train.labeled
    assert torch.equal(data.train.images, torch.rot90(expected.images, 1, dims=(2, 3)))  # rotated fashion
    assert not torch.equal(data.train.images, expected.images)
    assert set(trained["knn"]) == {"test"} and 0.0 <= trained["linear"]["test"] <= 1.0
    result = evaluate(out, device="cpu")
    assert result["data"] == "fashion-rotated" and result["n_held_out"] == {"test": 200}
    assert 0.0 <= result["linear"]["test"] <= 1.0 and 0.0 <= result["knn"]["test"] <= 1.0
