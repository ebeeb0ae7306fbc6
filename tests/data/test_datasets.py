"""Dataset loaders, spec parsing and seeded train / val carving."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import selfnas.data.datasets as datasets_module
from selfnas.data import DATASETS, dataset_names, load_dataset
from selfnas.data.datasets import DATA_ROOT_ENV, DatasetSpec, channel_stats, parse_spec
from selfnas.data.splits import carve_validation, limit_images
from selfnas.data.types import ImageSet
from selfnas.errors import ConfigError, DatasetError, RegistryError
from tests.conftest import FASHION_MNIST as FASHION_DIR
from tests.conftest import needs_fashion_mnist

from .test_idx import write_idx


@pytest.fixture(autouse=True)
def no_ambient_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests see neither the user's SELFNAS_DATA_ROOT nor the system Fashion-MNIST unless they ask."""
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.setattr(datasets_module, "SYSTEM_DATA_DIR", tmp_path / "no-system-datasets")


def dataset_error(spec: str, **kwargs: Any) -> str:
    """The one-line message load_dataset raises."""
    with pytest.raises(DatasetError) as info:
        load_dataset(spec, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def indexed_set(n: int) -> ImageSet:
    """n 1 x 2 x 2 images whose pixels hold their own index, so subsets can be traced."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageSet(images, torch.arange(n) % 3, ("a", "b", "c"))


def ids(images: ImageSet) -> set[int]:
    return set(images.images[:, 0, 0, 0].tolist())


# --- spec parsing and the registry ---------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cifar10", DatasetSpec("cifar10")),
        ("dtd@64", DatasetSpec("dtd", None, 64)),
        ("imagefolder:/a/b", DatasetSpec("imagefolder", "/a/b")),
        ("imagefolder:/a@b/c:d@32", DatasetSpec("imagefolder", "/a@b/c:d", 32)),
        ("npy:x@y.npy", DatasetSpec("npy", "x@y.npy")),
    ],
)
def test_parse_spec(spec: str, expected: DatasetSpec) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "@32", "cifar10@", "cifar10@x", "imagefolder:", "two words"])
def test_parse_spec_rejects(spec: str) -> None:
    with pytest.raises(DatasetError, match="name\\[:path\\]\\[@size\\]"):
        parse_spec(spec)


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(RegistryError, match="fashion-mnist") as info:
        load_dataset("imagenet-22k")
    assert "synthetic" in str(info.value)


def test_every_dataset_has_help() -> None:
    names = dataset_names()
    assert {"fashion-mnist", "mnist", "digits", "cifar10", "imagefolder", "npy", "synthetic", "dtd"} <= set(
        names
    )
    assert names == sorted(names) == DATASETS.names()
    assert all(DATASETS.describe(name) for name in names)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("imagefolder", "needs a path"),
        ("cifar10:/tmp", "takes no path"),
        ("cifar10@64", "fixed image size"),
        ("synthetic@2", "between"),
        ("synthetic@5000", "between"),
    ],
)
def test_spec_checks(spec: str, fragment: str) -> None:
    assert fragment in dataset_error(spec)


# --- carving ----------------------------------------------------------------------------------


def test_carve_validation_disjoint_and_deterministic() -> None:
    full = indexed_set(100)
    train, val = carve_validation(full, 0.2, seed=3)
    assert val is not None and len(train) == 80 and len(val) == 20
    assert ids(train).isdisjoint(ids(val)) and ids(train) | ids(val) == set(range(100))
    again_train, again_val = carve_validation(full, 0.2, seed=3)
    assert again_val is not None
    assert torch.equal(train.images, again_train.images) and torch.equal(val.images, again_val.images)
    _, other_val = carve_validation(full, 0.2, seed=4)
    assert other_val is not None and ids(other_val) != ids(val)
    assert torch.equal(val.labels, val.images[:, 0, 0, 0].long() % 3)  # labels travel with their images


def test_carve_validation_edges() -> None:
    full = indexed_set(10)
    train, val = carve_validation(full, 0.0, seed=0)
    assert train is full and val is None
    assert len(carve_validation(full, 0.01, seed=0)[1] or []) == 1
    with pytest.raises(ConfigError):
        carve_validation(full, 1.0, seed=0)
    with pytest.raises(DatasetError):
        carve_validation(indexed_set(1), 0.5, seed=0)


def test_limit_images_nested_and_seeded() -> None:
    full = indexed_set(50)
    small, large = limit_images(full, 5, seed=1), limit_images(full, 20, seed=1)
    assert len(small) == 5 and len(large) == 20 and ids(small) <= ids(large)
    assert ids(limit_images(full, 5, seed=1)) == ids(small)
    assert limit_images(full, None, seed=1) is full and limit_images(full, 500, seed=1) is full
    with pytest.raises(ConfigError):
        limit_images(full, 0, seed=1)


def test_channel_stats_match_float_computation() -> None:
    images = torch.randint(0, 256, (7, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(images)
    floats = images.double() / 255
    assert mean == pytest.approx(floats.mean(dim=(0, 2, 3)).tolist())
    assert std == pytest.approx(floats.std(dim=(0, 2, 3), unbiased=False).tolist())
    assert channel_stats(torch.zeros(2, 1, 3, 3, dtype=torch.uint8))[1] == (1 / 255,)


# --- Fashion-MNIST and MNIST -------------------------------------------------------------------


@needs_fashion_mnist
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets_module, "SYSTEM_DATA_DIR", FASHION_DIR.parent)
    splits = load_dataset("fashion-mnist", seed=0)
    assert splits.val is not None and splits.test is not None
    assert splits.train.images.shape == (54000, 1, 28, 28)
    assert splits.val.images.shape == (6000, 1, 28, 28)
    assert splits.test.images.shape == (10000, 1, 28, 28)
    assert splits.train.images.is_contiguous() and splits.train.labels is not None
    assert splits.train.labels.dtype == torch.int64 and int(splits.train.labels.max()) == 9
    assert splits.train.classes is not None and splits.train.classes[0] == "T-shirt/top"
    assert splits.mean[0] == pytest.approx(0.286, abs=0.002) and splits.std[0] == pytest.approx(
        0.353, abs=0.002
    )


def write_fake_idx_dataset(folder: Path, n_train: int = 20, n_test: int = 10, suffix: str = ".gz") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10)


@pytest.mark.parametrize("layout", ["fashion-mnist", "FashionMNIST/raw", "."])
def test_fashion_mnist_from_env_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, layout: str) -> None:
    write_fake_idx_dataset(tmp_path / "data" / layout, suffix="")
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "data"))
    splits = load_dataset("fashion-mnist", val_fraction=0.25)
    assert splits.val is not None and splits.test is not None
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 10)
    assert splits.train.channels == 1 and splits.train.size == 28


def test_fashion_mnist_root_beats_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_fake_idx_dataset(tmp_path / "root", n_train=30)
    write_fake_idx_dataset(tmp_path / "env", n_train=40)
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env"))
    assert len(load_dataset("fashion-mnist", root=str(tmp_path / "root"), val_fraction=0).train) == 30


def test_fashion_mnist_missing_says_apt_get(tmp_path: Path) -> None:
    message = dataset_error("fashion-mnist")
    assert "apt-get install dataset-fashion-mnist" in message and "--data-root" in message
    assert "no-system-datasets" in message


@pytest.fixture
def system_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An installed Fashion-MNIST (40 train images) that a named --data-root must never fall back to."""
    write_fake_idx_dataset(tmp_path / "system" / "fashion-mnist", n_train=40)
    monkeypatch.setattr(datasets_module, "SYSTEM_DATA_DIR", tmp_path / "system")
    assert len(load_dataset("fashion-mnist", val_fraction=0).train) == 40  # found without a root
    return tmp_path / "system"


def test_a_named_root_that_is_missing_is_an_error_not_the_system_copy(system_copy, tmp_path: Path) -> None:
    message = dataset_error("fashion-mnist", root=str(tmp_path / "typo"))
    assert f"--data-root {tmp_path / 'typo'} does not exist" in message
    assert str(system_copy) not in message
    (tmp_path / "afile").write_text("x")
    assert "is not a directory" in dataset_error("fashion-mnist", root=str(tmp_path / "afile"))


def test_a_named_root_without_the_files_is_an_error_not_the_system_copy(system_copy, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    message = dataset_error("fashion-mnist", root=str(tmp_path / "empty"))
    assert f"Fashion-MNIST not found in {tmp_path / 'empty' / 'fashion-mnist'}" in message
    assert str(system_copy) not in message and str(tmp_path / "empty" / "fashion-mnist") in message


@pytest.mark.parametrize("missing", ["t10k-labels-idx1-ubyte", "train-images-idx3-ubyte"])
def test_a_named_root_lacking_some_files_names_them(system_copy, tmp_path: Path, missing: str) -> None:
    write_fake_idx_dataset(tmp_path / "mine", suffix="")
    (tmp_path / "mine" / missing).unlink()
    message = dataset_error("fashion-mnist", root=str(tmp_path / "mine"))
    assert f"{tmp_path / 'mine'} lacks {missing}" in message and str(system_copy) not in message


def test_a_partial_copy_in_a_subfolder_is_an_error_not_the_root_itself(system_copy, tmp_path: Path) -> None:
    write_fake_idx_dataset(tmp_path / "mine" / "fashion-mnist", suffix="")
    (tmp_path / "mine" / "fashion-mnist" / "t10k-images-idx3-ubyte").unlink()
    assert "t10k-images-idx3-ubyte" in dataset_error("fashion-mnist", root=str(tmp_path / "mine"))


def test_mnist_root_that_does_not_exist_offers_no_installed_copy(tmp_path: Path) -> None:
    message = dataset_error("mnist", root=str(tmp_path / "typo"))
    assert "does not exist" in message and "installed copy" not in message


def test_fashion_mnist_truncated_says_reinstall(tmp_path: Path) -> None:
    write_fake_idx_dataset(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-8])
    message = dataset_error("fashion-mnist", root=str(tmp_path))
    assert str(labels) in message and "--reinstall" in message


def test_mnist_from_root_and_missing(tmp_path: Path) -> None:
    write_fake_idx_dataset(tmp_path / "mnist")
    splits = load_dataset("mnist", root=str(tmp_path), val_fraction=0)
    assert splits.train.classes == tuple("0123456789") and len(splits.train) == 20
    assert "--data-root" in dataset_error("mnist")


# --- built-in datasets ------------------------------------------------------------------------


def test_digits() -> None:
    first, second = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert first.test is not None and second.test is not None and first.val is not None
    assert first.train.images.shape[1:] == (1, 16, 16)
    assert len(first.train) + len(first.val) + len(first.test) == 1797 and len(first.test) == 359
    assert torch.equal(first.test.images, second.test.images)  # the test split ignores the run seed
    assert int(first.train.images.max()) > 200 and first.train.num_classes == 10


def test_synthetic_is_deterministic_and_learnable() -> None:
    splits = load_dataset("synthetic", val_fraction=0)
    again = load_dataset("synthetic", val_fraction=0)
    assert splits.test is not None and splits.train.labels is not None and splits.test.labels is not None
    assert splits.train.images.shape == (512, 3, 16, 16) and splits.test.images.shape == (128, 3, 16, 16)
    assert torch.equal(splits.train.images, again.train.images)
    assert torch.bincount(splits.train.labels).tolist() == [128] * 4
    train_x, test_x = splits.train.images.flatten(1).float(), splits.test.images.flatten(1).float()
    centroids = torch.stack([train_x[splits.train.labels == k].mean(0) for k in range(4)])
    predicted = torch.cdist(test_x, centroids).argmin(1)
    assert (predicted == splits.test.labels).float().mean() > 0.9
    assert load_dataset("synthetic@32").train.size == 32


def test_train_limit_after_val() -> None:
    full = load_dataset("synthetic", seed=5)
    limited = load_dataset("synthetic", seed=5, train_limit=100)
    assert full.val is not None and limited.val is not None
    assert len(limited.train) == 100 and torch.equal(full.val.images, limited.val.images)
    assert (limited.mean, limited.std) == (full.mean, full.std)  # normalisation ignores the limit
    assert limited.name == "synthetic"


# --- torchvision datasets ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "stl10", "dtd"])
def test_torchvision_missing_without_download(tmp_path: Path, name: str) -> None:
    message = dataset_error(name, root=str(tmp_path))
    assert f"{name} not found under {tmp_path}" in message and "--download" in message


def test_torchvision_root_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env-root"))
    assert str(tmp_path / "env-root") in dataset_error("cifar10")


def write_fake_cifar10(root: Path, per_batch: int = 4, n_test: int = 6) -> np.ndarray:
    """The real cifar-10-batches-py pickle layout; returns the test images as N x 3 x 32 x 32."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def dump(name: str, n: int) -> np.ndarray:
        rows = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)  # R plane, G plane, B plane
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": rows, "labels": [i % 10 for i in range(n)]}, fh)
        return rows.reshape(n, 3, 32, 32)

    for index in range(1, 6):
        dump(f"data_batch_{index}", per_batch)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, fh)
    return dump("test_batch", n_test)


def test_cifar10_from_fake_batches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    test_images = write_fake_cifar10(tmp_path)
    splits = load_dataset("cifar10", root=str(tmp_path), val_fraction=0.1)
    assert splits.val is not None and splits.test is not None and splits.test.labels is not None
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 6)
    assert splits.train.images.shape[1:] == (3, 32, 32) and splits.train.images.is_contiguous()
    assert torch.equal(splits.test.images, torch.from_numpy(test_images))
    assert splits.test.labels.tolist() == list(range(6)) and splits.test.classes == tuple(
        f"class{k}" for k in range(10)
    )


# --- your own files ---------------------------------------------------------------------------


def save_image(path: Path, mode: str, size: tuple[int, int], value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, 0)).save(path)


def test_imagefolder_labeled_mixed_modes(tmp_path: Path) -> None:
    save_image(tmp_path / "cat" / "a.png", "RGB", (40, 30))
    save_image(tmp_path / "cat" / "b.jpg", "L", (20, 50))
    save_image(tmp_path / "dog" / "c.png", "RGB", (32, 32))
    (tmp_path / "dog" / ".hidden.png").write_bytes(b"ignored")
    splits = load_dataset(f"imagefolder:{tmp_path}@24", val_fraction=0)
    assert splits.train.images.shape == (3, 3, 24, 24) and splits.test is None
    assert splits.train.classes == ("cat", "dog") and splits.train.labels is not None
    assert splits.train.labels.tolist() == [0, 0, 1]
    assert torch.equal(splits.train.images[1, 0], splits.train.images[1, 2])  # grey repeated to RGB


def test_imagefolder_flat_grayscale_is_unlabeled(tmp_path: Path) -> None:
    for index in range(4):
        save_image(tmp_path / f"{index}.png", "L", (10, 12), value=index * 60)
    splits = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.25)
    assert splits.train.images.shape == (3, 1, 32, 32)
    assert splits.train.labels is None and splits.train.classes is None and not splits.train.labeled
    assert splits.val is not None and splits.val.labels is None


def test_imagefolder_train_test_subfolders(tmp_path: Path) -> None:
    for split, classes in (("train", ("a", "b", "c")), ("test", ("a", "c"))):
        for name in classes:
            save_image(tmp_path / split / name / "x.png", "RGB", (16, 16))
    splits = load_dataset(f"imagefolder:{tmp_path}@16", val_fraction=0)
    assert splits.test is not None and splits.test.labels is not None
    assert splits.test.labels.tolist() == [0, 2] and splits.test.classes == ("a", "b", "c")
    save_image(tmp_path / "test" / "zebra" / "x.png", "RGB", (16, 16))
    assert "zebra" in dataset_error(f"imagefolder:{tmp_path}")


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda d: d.mkdir(), "no images"),
        (lambda d: (d / "a").mkdir(parents=True), "has no images"),
        (lambda d: (save_image(d / "loose.png", "L", (4, 4)), (d / "cls").mkdir()), "pick one layout"),
        (lambda d: None, "not a directory"),
    ],
    ids=["empty", "empty-class", "mixed-layout", "missing"],
)
def test_imagefolder_bad_layouts(tmp_path: Path, setup: Callable[[Path], object], fragment: str) -> None:
    folder = tmp_path / "images"
    setup(folder)
    assert fragment in dataset_error(f"imagefolder:{folder}")


def test_imagefolder_corrupt_image_named(tmp_path: Path) -> None:
    save_image(tmp_path / "good.png", "RGB", (8, 8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    message = dataset_error(f"imagefolder:{tmp_path}")
    assert str(tmp_path / "bad.png") in message


@pytest.mark.parametrize(("shape", "channels"), [((5, 8, 8), 1), ((5, 8, 8, 1), 1), ((5, 8, 8, 3), 3)])
def test_npy(tmp_path: Path, shape: tuple[int, ...], channels: int) -> None:
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", array)
    splits = load_dataset(f"npy:{tmp_path / 'x.npy'}", val_fraction=0)
    assert splits.train.images.shape == (5, channels, 8, 8) and splits.train.labels is None
    assert splits.train.images.is_contiguous() and splits.test is None
    assert torch.equal(splits.train.images[:, 0], torch.from_numpy(array.reshape(5, 8, 8, -1)[..., 0]))


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((2, 8, 8), dtype=np.float32), "float32"),
        (np.zeros((2, 8, 8, 4), dtype=np.uint8), "expected N x H x W"),
        (np.zeros((8, 8), dtype=np.uint8), "expected N x H x W"),
        (np.zeros((2, 8, 6), dtype=np.uint8), "square"),
        (np.zeros((0, 8, 8), dtype=np.uint8), "at least one"),
        (np.array([{"a": 1}], dtype=object), "cannot read"),
    ],
)
def test_npy_rejects(tmp_path: Path, array: np.ndarray, fragment: str) -> None:
    np.save(tmp_path / "x.npy", array, allow_pickle=True)
    assert fragment in dataset_error(f"npy:{tmp_path / 'x.npy'}")


def test_npy_unreadable(tmp_path: Path) -> None:
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert "cannot read" in dataset_error(f"npy:{tmp_path / 'junk.npy'}")
    assert "cannot read" in dataset_error(f"npy:{tmp_path / 'absent.npy'}")


def test_svhn_from_fake_mat(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import scipy.io
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)
    rng = np.random.default_rng(0)
    images = {}
    for split, n in (("train", 5), ("test", 3)):
        images[split] = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        digits = np.arange(1, n + 1).reshape(n, 1)  # SVHN stores the digit 0 as 10
        digits[0] = 10
        scipy.io.savemat(
            tmp_path / f"{split}_32x32.mat", {"X": images[split].transpose(2, 3, 1, 0), "y": digits}
        )
    splits = load_dataset("svhn", root=str(tmp_path), val_fraction=0)
    assert splits.test is not None and splits.test.labels is not None
    assert torch.equal(splits.test.images, torch.from_numpy(images["test"]))
    assert splits.test.labels.tolist() == [0, 2, 3] and splits.test.images.is_contiguous()


def write_fake_dtd(root: Path) -> Path:
    """torchvision's DTD layout: dtd/dtd/images/<class>/<file> plus labels/<split>1.txt."""
    data = root / "dtd" / "dtd"
    for name, size in (("banded/a.jpg", (40, 20)), ("banded/b.jpg", (20, 30)), ("dotted/c.jpg", (25, 25))):
        save_image(data / "images" / name, "RGB", size)
    (data / "labels").mkdir()
    (data / "labels" / "train1.txt").write_text("banded/a.jpg\ndotted/c.jpg\n")
    (data / "labels" / "test1.txt").write_text("banded/b.jpg\n")
    return data


def test_dtd_resized_from_fake_folder(tmp_path: Path) -> None:
    data = write_fake_dtd(tmp_path)
    splits = load_dataset("dtd@20", root=str(tmp_path), val_fraction=0)
    assert splits.test is not None and splits.train.labels is not None
    assert splits.train.images.shape == (2, 3, 20, 20) and splits.test.images.shape == (1, 3, 20, 20)
    assert splits.train.classes == ("banded", "dotted") and splits.train.labels.tolist() == [0, 1]
    assert load_dataset("dtd", root=str(tmp_path), val_fraction=0).train.size == 64
    (data / "images" / "dotted" / "c.jpg").write_bytes(b"garbage")
    assert "unreadable" in dataset_error("dtd@20", root=str(tmp_path))
