"""Downstream scenarios: offline ones on the system Fashion-MNIST and scikit-learn digits, online
ones on tiny fake torchvision folders, the user's own folders of PNGs, limits, few-shot splits and
shape conversion, and scenario names as ``--data`` of search and eval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from selfnas.data import load_dataset
from selfnas.data.datasets import DATA_ROOT_ENV, channel_stats
from selfnas.data.scenarios import (
    COARSE_CLASSES,
    SCENARIOS,
    Scenario,
    check_folder,
    convert_images,
    is_scenario_definition,
    load_scenario,
    parse_scenario_definition,
    parse_scenario_definitions,
    pretraining_splits,
    probe_splits,
    scenario_names,
    stratified_limit,
)
from selfnas.data.splits import limit_images
from selfnas.data.types import ImageSet
from selfnas.errors import ConfigError, DatasetError, RegistryError
from tests.conftest import TINY, needs_fashion_mnist
from tests.data.test_datasets import write_fake_cifar10, write_fake_dtd

needs_fashion = needs_fashion_mnist  # skips without it; fails under CI=true
OFFLINE = {  # name -> classes
    "fashion-mnist": 10,
    "fashion-coarse": 5,
    "fashion-fewshot": 10,
    "fashion-rotated": 10,
    "fashion-inverted": 10,
    "digits": 10,
}
ONLINE = ["cifar10", "cifar100", "stl10", "svhn", "flowers102", "fgvc-aircraft", "stanford-cars", "dtd"]


@pytest.fixture(autouse=True)
def no_data_root_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's SELFNAS_DATA_ROOT must not change what these tests load."""
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)


def check_scenario(s: Scenario, classes: int, channels: int = 1, size: int = 28) -> None:
    assert s.num_classes == classes and s.description and "\n" not in s.description
    assert s.unlabeled.labels is None and s.unlabeled.classes is None
    for split in (s.train, s.test):
        assert split.labels is not None and split.classes is not None and len(split.classes) == classes
        assert int(split.labels.min()) >= 0 and int(split.labels.max()) < classes
    for split in (s.unlabeled, s.train, s.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (channels, size, size)


def test_names_and_registry() -> None:
    assert scenario_names(offline_only=True) == list(OFFLINE)  # the source, fashion-mnist, first
    assert scenario_names() == [*OFFLINE, *ONLINE]
    assert sorted(SCENARIOS.names()) == sorted(scenario_names())
    for name in scenario_names():
        assert SCENARIOS.describe(name) and SCENARIOS.get(name).offline == (name in OFFLINE)
    with pytest.raises(RegistryError, match="fashion-coarse"):
        load_scenario("imagenet")


@pytest.mark.parametrize("name", [n for n in OFFLINE if n != "digits"])
@needs_fashion
def test_every_fashion_scenario_loads(name: str) -> None:
    s = load_scenario(name, limit=60)
    check_scenario(s, OFFLINE[name])
    assert s.name == name and len(s.unlabeled) == len(s.test) == 60
    if name == "fashion-fewshot":  # the limit caps the 10 labels per class too, stratified: 6 each
        assert s.train.labels.bincount().tolist() == [6] * 10
    else:
        assert len(s.train) == 60
    again = load_scenario(name, limit=60)
    assert torch.equal(s.train.images, again.train.images) and torch.equal(s.test.labels, again.test.labels)


def test_digits_scenario_is_28px_uint8_without_any_download() -> None:
    s = load_scenario("digits", seed=3)
    check_scenario(s, 10)
    assert len(s.unlabeled) + len(s.train) + len(s.test) == 1797 and len(s.test) == 359
    assert int(s.train.images.max()) > 200  # uint8 range, not the 0..16 of the 8x8 originals
    assert SCENARIOS.get("digits")(None, 3, False, 50).train.images.shape == (
        50,
        1,
        28,
        28,
    )  # the registry call


def test_pretraining_and_probe_views_of_a_scenario_share_the_pool_statistics() -> None:
    s = load_scenario("digits", seed=3)
    pool = torch.cat([s.unlabeled.images, s.train.images])  # what the study pretrains on
    pre = pretraining_splits(s, val_fraction=0.25, seed=3)
    assert not pre.train.labeled and not pre.val.labeled and pre.test is s.test and pre.name == "digits"
    assert len(pre.val) == round(0.25 * len(pool)) and len(pre.train) + len(pre.val) == len(pool)
    assert int(pre.train.images.sum()) + int(pre.val.images.sum()) == int(pool.sum())  # a partition
    whole = pretraining_splits(s)
    assert whole.val is None and torch.equal(whole.train.images, pool)
    probe = probe_splits(s)
    assert probe.train is s.train and probe.val is None and probe.test is s.test
    assert (probe.mean, probe.std) == (pre.mean, pre.std) == channel_stats(pool)


@needs_fashion
def test_fewshot_has_exactly_10_labels_per_class_and_the_rest_unlabeled() -> None:
    s = load_scenario("fashion-fewshot", seed=1)
    assert s.train.labels is not None and torch.bincount(s.train.labels).tolist() == [10] * 10
    assert len(s.unlabeled) == 60_000 - 100 and len(s.test) == 10_000
    assert load_scenario("fashion-fewshot", seed=1, limit=50).train.labels.bincount().tolist() == [5] * 10
    other = load_scenario("fashion-fewshot", seed=2)
    assert not torch.equal(s.train.images, other.train.images)  # the labeled 100 depend on the seed


@needs_fashion
def test_derived_fashion_scenarios_transform_the_same_images() -> None:
    base = load_scenario("fashion-mnist", seed=4, limit=200)
    coarse = load_scenario("fashion-coarse", seed=4, limit=200)
    rotated = load_scenario("fashion-rotated", seed=4, limit=200)
    inverted = load_scenario("fashion-inverted", seed=4, limit=200)
    assert torch.equal(inverted.test.images, 255 - base.test.images)
    assert torch.equal(inverted.train.labels, base.train.labels)
    assert torch.equal(rotated.train.images, torch.rot90(base.train.images, 1, dims=(2, 3)))
    assert torch.equal(rotated.unlabeled.images, torch.rot90(base.unlabeled.images, 1, dims=(2, 3)))
    assert coarse.test.classes == COARSE_CLASSES
    assert base.test.classes is not None
    names = {
        "tops": {"T-shirt/top", "Pullover", "Coat", "Shirt"},
        "bottoms": {"Trouser"},
        "dresses": {"Dress"},
    }
    names |= {"footwear": {"Sandal", "Sneaker", "Ankle boot"}, "bags": {"Bag"}}
    # coarse keeps the class shares of the full test split, so compare a whole split, unlimited
    full, full_coarse = load_scenario("fashion-mnist", seed=4), load_scenario("fashion-coarse", seed=4)
    assert torch.equal(full.test.images, full_coarse.test.images)
    for fine, group in zip(full.test.labels.tolist(), full_coarse.test.labels.tolist(), strict=True):
        assert full.test.classes[fine] in names[COARSE_CLASSES[group]]


@needs_fashion
def test_seed_changes_the_probe_split_but_never_the_test_split() -> None:
    a, b = load_scenario("fashion-mnist", seed=0), load_scenario("fashion-mnist", seed=1)
    assert torch.equal(a.test.images, b.test.images)
    assert not torch.equal(a.unlabeled.images[:50], b.unlabeled.images[:50])
    assert len(a.unlabeled) == 6000 and len(a.train) == 54_000


def test_stratified_limit_keeps_class_shares_and_nests_nothing_unexpected() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    images = ImageSet(torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1), labels, ("a", "b", "c"))
    small = stratified_limit(images, 10, seed=0)
    assert torch.bincount(small.labels).tolist() == [6, 3, 1]
    assert small.images.view(-1).tolist() == sorted(small.images.view(-1).tolist())  # order kept
    assert torch.bincount(stratified_limit(images, 15, seed=0).labels).tolist() == [
        9,
        5,
        1,
    ]  # largest remainder
    assert (
        stratified_limit(images, 1000, seed=0) is images and stratified_limit(images, None, seed=0) is images
    )
    assert not torch.equal(stratified_limit(images, 10, 1).images, small.images)
    assert len(stratified_limit(ImageSet(images.images), 7, seed=0)) == 7  # unlabeled: plain subset


def test_convert_images_to_gray_rgb_and_size() -> None:
    rgb = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    rgb[:, 0] = 255  # pure red
    gray = convert_images(ImageSet(rgb, torch.tensor([0, 1]), ("x", "y")), channels=1)
    assert gray.images.shape == (2, 1, 8, 8) and int(gray.images[0, 0, 0, 0]) == round(0.299 * 255)
    assert gray.classes == ("x", "y") and gray.labels.tolist() == [0, 1]
    up = convert_images(gray, channels=3, size=16)
    assert up.images.shape == (2, 3, 16, 16) and up.images.dtype == torch.uint8
    assert torch.equal(up.images[:, 0], up.images[:, 2]) and int(up.images.max()) == 76
    assert convert_images(up) is up and len(convert_images(ImageSet(rgb[:0]), 1, 4)) == 0


def test_digits_converted_to_a_cifar_shape() -> None:
    s = load_scenario("digits", limit=20, channels=3, size=32)
    check_scenario(s, 10, channels=3, size=32)


def test_online_scenario_from_a_fake_cifar10_folder_converted_to_fashion_shape(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    test_images = write_fake_cifar10(tmp_path)  # 5 x 4 train, 6 test images
    s = load_scenario("cifar10", root=str(tmp_path))
    check_scenario(s, 10, channels=3, size=32)
    assert (len(s.unlabeled), len(s.train), len(s.test)) == (2, 18, 6)
    assert torch.equal(s.test.images, torch.from_numpy(test_images))
    gray = load_scenario("cifar10", root=str(tmp_path), channels=1, size=28)
    check_scenario(gray, 10, channels=1, size=28)
    assert gray.test.labels.tolist() == s.test.labels.tolist()


def test_online_scenario_resized_dataset_from_a_fake_dtd_folder(tmp_path: Path) -> None:
    write_fake_dtd(tmp_path)  # 2 train images (banded, dotted), 1 test image
    s = load_scenario("dtd", root=str(tmp_path))
    assert (len(s.unlabeled), len(s.train), len(s.test)) == (1, 1, 1)  # one train image kept unlabeled
    assert s.train.classes == ("banded", "dotted") and s.num_classes == 2
    assert s.train.images.shape[1:] == (3, 64, 64)  # the loader's default side for DTD
    small = load_scenario("dtd", root=str(tmp_path), channels=1, size=28)
    assert small.unlabeled.images.shape == (1, 1, 28, 28) and small.test.images.shape == (1, 1, 28, 28)


@pytest.mark.parametrize("name", ONLINE)
def test_missing_online_scenario_is_a_one_line_dataset_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(DatasetError) as err:
        load_scenario(name, root=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message and "--download" in message


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": True}, "limit"),
        ({"channels": 2}, "channels"),
        ({"size": 2}, "size"),
        ({"size": 28.0}, "size"),
    ],
)
def test_bad_options_are_config_errors(options: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_scenario("digits", **options)


# --- your own folders as scenarios -----------------------------------------------------------


def write_png_classes(folder: Path, classes: int = 3, per_class: int = 10, side: int = 28) -> Path:
    """``classes`` subfolders of ``per_class`` gray PNGs each; image ``i`` of class ``k`` is filled
    with ``25 * k + 2 * i``, so every image is distinct and its class is ``value // 25``."""
    from PIL import Image

    for k in range(classes):
        (folder / f"class{k}").mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((side, side), 25 * k + 2 * i, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"class{k}" / f"{i}.png")
    return folder


def _values(images: ImageSet) -> list[int]:
    return images.images[:, 0, 0, 0].tolist()  # one flat value per image


def test_a_folder_of_pngs_is_a_labeled_scenario_with_a_fixed_stratified_test(tmp_path: Path) -> None:
    folder = write_png_classes(tmp_path / "pngs")
    name, spec = parse_scenario_definition(f"pngs = imagefolder:{folder}@28")
    assert (name, spec) == ("pngs", f"imagefolder:{folder}@28")
    s = load_scenario("pngs", seed=0, defined={name: spec})
    check_scenario(s, 3)
    assert s.name == "pngs" and s.train.classes == ("class0", "class1", "class2")
    assert (len(s.unlabeled), len(s.train), len(s.test)) == (2, 22, 6)
    assert s.test.labels.bincount().tolist() == [2, 2, 2]  # stratified: every class tested
    values = _values(s.unlabeled) + _values(s.train) + _values(s.test)
    assert sorted(values) == sorted(25 * k + 2 * i for k in range(3) for i in range(10))  # a partition
    for split in (s.train, s.test):
        assert split.labels.tolist() == [v // 25 for v in _values(split)]  # labels follow the folders
    other = load_scenario("pngs", seed=1, defined={name: spec})
    assert _values(other.test) == _values(s.test) and _values(other.train) != _values(s.train)
    small = load_scenario("pngs", seed=0, limit=3, channels=3, size=16, defined={name: spec})
    check_scenario(small, 3, channels=3, size=16)
    assert small.test.labels.bincount().tolist() == [1, 1, 1]


def test_a_folder_with_train_and_test_keeps_its_own_test(tmp_path: Path) -> None:
    write_png_classes(tmp_path / "both" / "train", classes=2, per_class=10)
    write_png_classes(tmp_path / "both" / "test", classes=2, per_class=3)
    spec = f"imagefolder:{tmp_path / 'both'}@28"
    s = load_scenario("both", defined={"both": spec})
    assert (len(s.unlabeled), len(s.train), len(s.test)) == (2, 18, 6)
    assert _values(s.test) == [0, 2, 4, 25, 27, 29] and s.test.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_a_user_scenario_is_a_data_name_in_both_views(tmp_path: Path) -> None:
    folder = write_png_classes(tmp_path / "pngs")
    spec = f"pngs=imagefolder:{folder}@28"
    pre = load_dataset(spec, val_fraction=0.25, pretraining=True)
    assert pre.name == spec and not pre.train.labeled and not pre.val.labeled
    assert len(pre.train) + len(pre.val) == 24 and len(pre.test) == 6 and pre.test.labeled
    probe = load_dataset(spec, train_limit=9)
    assert probe.val is None and len(probe.train) == 9 and probe.train.labeled and len(probe.test) == 6
    assert (probe.mean, probe.std) == (pre.mean, pre.std)  # normalised as it was pretrained


def _flat_pngs(tmp: Path) -> Path:
    from PIL import Image

    (tmp / "flat").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), i, dtype=np.uint8)).save(tmp / "flat" / f"{i}.png")
    return tmp / "flat"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda tmp: tmp / "no-such-folder", "does not exist"),
        (_flat_pngs, "no class subfolders"),
        (lambda tmp: write_png_classes(tmp / "one", classes=1), "at least 2 classes"),
    ],
    ids=["missing", "flat", "one-class"],
)
def test_a_folder_that_cannot_be_probed_is_a_one_line_error(tmp_path: Path, make, fragment: str) -> None:
    _, spec = parse_scenario_definition(f"mine=imagefolder:{make(tmp_path)}")
    checks = (lambda: check_folder("mine", spec), lambda: load_scenario("mine", defined={"mine": spec}))
    for check in checks:
        with pytest.raises(DatasetError, match=fragment) as err:
            check()
        assert "\n" not in str(err.value) and "scenario mine" in str(err.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("pets", "expected NAME=imagefolder:PATH"),
        ("=imagefolder:/tmp", "expected NAME=imagefolder:PATH"),
        ("pets=", "expected NAME=imagefolder:PATH"),
        ("my pets=imagefolder:/tmp", "bad scenario name"),
        ("a.b=imagefolder:/tmp", "bad scenario name"),
        ("fashion-coarse=imagefolder:/tmp", "taken by a registered scenario"),
        ("synthetic=imagefolder:/tmp", "taken by a registered dataset"),
        ("pets=npy:/tmp/x.npy", "no labeled folder"),
        ("pets=imagefolder", "no labeled folder"),
    ],
)
def test_malformed_or_clashing_definitions_are_one_line_config_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as err:
        parse_scenario_definition(text)
    assert "\n" not in str(err.value)


def test_a_name_defined_twice_is_refused_and_a_path_with_equals_stays_a_dataset() -> None:
    with pytest.raises(ConfigError, match="defined twice"):
        parse_scenario_definitions(["a=imagefolder:/x", "a=imagefolder:/y"])
    assert is_scenario_definition("pets=imagefolder:/x") and not is_scenario_definition("imagefolder:/a=b")


# --- scenario names as --data of search and eval ----------------------------------------------

SEARCH = [o for o in TINY if not o.startswith(("data.", "optim."))]


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> list:
    """The data every trainer of this test loads (search and train read it the same way)."""
    import selfnas.training.trainer as trainer_module

    seen: list = []
    load = trainer_module.load_config_data

    def spy(*args, **kwargs):
        seen.append(load(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(trainer_module, "load_config_data", spy)
    return seen


def _search(out: Path, data: str) -> None:
    """``selfnas search`` (DARTS heads, a few steps) in this process, as the command line runs it."""
    from typer.testing import CliRunner

    from selfnas.cli import app

    args = ["search", "--out", str(out), "--data", data, "--train-limit", "64", "--epochs", "1"]
    args += ["--batch-size", "16", "-q", *(a for o in SEARCH for a in ("--set", o))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)


@needs_fashion
def test_search_data_fashion_rotated_pretrains_on_the_rotated_scenario(
    tmp_path: Path, loaded: list, single_thread: None
) -> None:
    _search(tmp_path / "run", "fashion-rotated")
    (data,) = loaded
    plain = pretraining_splits(load_scenario("fashion-mnist", seed=0), val_fraction=0.1, seed=0)
    expected = torch.rot90(limit_images(plain.train, 64, seed=0).images, 1, dims=(2, 3))
    assert data.name == "fashion-rotated" and not data.train.labeled
    assert torch.equal(data.train.images, expected)
    assert (tmp_path / "run" / "genotype.json").exists()


def test_search_and_eval_on_a_folder_defined_as_data(
    tmp_path: Path, loaded: list, single_thread: None
) -> None:
    from selfnas.evaluation import evaluate

    folder = write_png_classes(tmp_path / "pngs", per_class=30, side=16)
    spec = f"pngs=imagefolder:{folder}@16"
    _search(tmp_path / "run", spec)
    (data,) = loaded
    assert data.name == spec and not data.train.labeled and len(data.train) == 64 and len(data.test) == 18
    result = evaluate(tmp_path / "run", device="cpu")  # the run's own data: the folder's probe view
    assert result["data"] == spec and result["n_held_out"] == {"test": 18} and result["n_train"] == 65
    assert 0.0 <= result["linear"]["test"] <= 1.0
