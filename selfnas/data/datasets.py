"""Named dataset loaders (:data:`DATASETS`) and :func:`load_registered`, which loads one of them.

A dataset spec is ``name[:path][@size]``: ``fashion-mnist``, ``dtd@64``,
``imagefolder:~/photos@32``, ``npy:faces.npy``. Every loader returns whole splits
as uint8 N x C x H x W tensors (:class:`ImageSet`); every failure a user can fix is
a one-line :class:`DatasetError`.

Callers get data by name from :func:`selfnas.data.load_dataset` (:mod:`selfnas.data.catalog`),
which knows these names and, for the others, the scenarios of :mod:`selfnas.data.scenarios`
(built on this module, hence not known here).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from selfnas.data.idx import read_idx
from selfnas.data.splits import carve_validation, limit_images
from selfnas.data.types import DatasetSplits, ImageSet
from selfnas.errors import DatasetError
from selfnas.registry import Registry

DATA_ROOT_ENV = "SELFNAS_DATA_ROOT"
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
CACHE_DIR = Path("~/.cache/selfnas/data")
MIN_SIZE, MAX_SIZE = 4, 1024
SPEC_RE = re.compile(r"(?P<name>[A-Za-z0-9_-]+)(?::(?P<path>.+?))?(?:@(?P<size>[0-9]+))?")
IMAGE_SUFFIXES = frozenset(
    {".bmp", ".gif", ".jpeg", ".jpg", ".pbm", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}
)
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))
IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SYNTHETIC_SEED, SYNTHETIC_CLASSES = 0, 4


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed ``name[:path][@size]``."""

    name: str
    path: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class LoadRequest:
    """What a loader is asked for. ``size`` is the image side, already defaulted
    (``None`` for loaders whose images have one native size)."""

    path: str | None
    size: int | None
    root: str | None
    download: bool

    @property
    def side(self) -> int:
        """The image side for loaders registered with a ``default_size``."""
        if self.size is None:
            raise DatasetError("this dataset has one native image size; no @SIZE applies")
        return self.size


@dataclass(frozen=True)
class RawSplits:
    """A loader's result, before validation carving: train and (when it has one) test."""

    train: ImageSet
    test: ImageSet | None


@dataclass(frozen=True)
class DatasetLoader:
    """A registered loader. ``default_size`` is None when ``@SIZE`` is refused."""

    load: Callable[[LoadRequest], RawSplits]
    takes_path: bool = False
    default_size: int | None = None


DATASETS: Registry[DatasetLoader] = Registry("dataset")


def _register(
    name: str, help: str, *, takes_path: bool = False, default_size: int | None = None
) -> Callable[[Callable[[LoadRequest], RawSplits]], Callable[[LoadRequest], RawSplits]]:
    def decorator(load: Callable[[LoadRequest], RawSplits]) -> Callable[[LoadRequest], RawSplits]:
        DATASETS.add(name, DatasetLoader(load, takes_path, default_size), help)
        return load

    return decorator


def dataset_names() -> list[str]:
    """Registered dataset names, sorted; ``DATASETS.describe(name)`` gives each one's help line."""
    return DATASETS.names()


def parse_spec(spec: str) -> DatasetSpec:
    """Split ``name[:path][@size]``; a trailing ``@`` + digits is always the size."""
    match = SPEC_RE.fullmatch(spec)
    if match is None:
        raise DatasetError(
            f"bad dataset spec {spec!r}; expected name[:path][@size], e.g. cifar10, dtd@64, imagefolder:DIR"
        )
    size = match["size"]
    return DatasetSpec(match["name"], match["path"], None if size is None else int(size))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 N x C x H x W images scaled to [0, 1], from
    exact 256-bin histograms. The std is floored at one grey level (1/255)."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        mean = float((counts * values).sum() / counts.sum())
        var = float((counts * (values - mean).square()).sum() / counts.sum())
        means.append(mean)
        stds.append(max(math.sqrt(var), 1.0 / 255.0))
    return tuple(means), tuple(stds)


def load_registered(
    spec: str,
    root: str | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_limit: int | None = None,
) -> DatasetSplits:
    """Load a dataset of :data:`DATASETS` by spec and split it into train / val / test.

    ``val`` is carved from the loader's train split with ``seed``; then ``train_limit``
    keeps a seeded subset of the remaining train images. ``test`` is the loader's own
    test split, untouched (``None`` when it has none). ``mean``/``std`` are per channel,
    in [0, 1] units, computed from the train images before ``train_limit``, so a limited
    run normalises exactly like the full one.
    """
    parsed = parse_spec(spec)
    loader = DATASETS.get(parsed.name)
    if loader.takes_path and parsed.path is None:
        raise DatasetError(f"dataset {parsed.name} needs a path: {parsed.name}:PATH")
    if not loader.takes_path and parsed.path is not None:
        raise DatasetError(f"dataset {parsed.name} takes no path; give its folder with --data-root DIR")
    if parsed.size is not None and loader.default_size is None:
        raise DatasetError(f"dataset {parsed.name} has a fixed image size; drop @{parsed.size} from the spec")
    if parsed.size is not None and not MIN_SIZE <= parsed.size <= MAX_SIZE:
        raise DatasetError(f"image size @{parsed.size} must be between {MIN_SIZE} and {MAX_SIZE} pixels")
    size = loader.default_size if parsed.size is None else parsed.size
    raw = loader.load(LoadRequest(parsed.path, size, root, download))
    train, val = carve_validation(raw.train, val_fraction, seed)
    mean, std = channel_stats(train.images)
    return DatasetSplits(spec, limit_images(train, train_limit, seed), val, raw.test, mean, std)


# --- IDX datasets (Fashion-MNIST, MNIST) -------------------------------------------------


def _search_dirs(root: str | None, subdirs: tuple[str, ...], system_dir: Path | None) -> list[Path]:
    """Where an IDX dataset may lie: ``base/<subdir>`` then ``base`` for ``base`` = ``root``, else
    ``$SELFNAS_DATA_ROOT`` then ``system_dir``. A ``root`` the user named is searched alone: the
    system copy is only a fallback when no root was given."""
    if root:
        base_path = Path(root).expanduser()
        return [base_path / sub for sub in subdirs] + [base_path]
    dirs = []
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        base_path = Path(env).expanduser()
        dirs += [base_path / sub for sub in subdirs] + [base_path]
    if system_dir is not None:
        dirs.append(system_dir)
    return dirs


def _idx_file(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _idx_split(images_path: Path, labels_path: Path, classes: tuple[str, ...]) -> ImageSet:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(f"{images_path} holds shape {images.shape}, expected N x 28 x 28 images")
    if labels.shape != images.shape[:1]:
        raise DatasetError(f"{labels_path} holds {labels.shape} labels for {images.shape[0]} images")
    if labels.size and int(labels.max()) >= len(classes):
        raise DatasetError(f"{labels_path} has label {int(labels.max())}, expected 0..{len(classes) - 1}")
    return ImageSet(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), classes)


def _idx_paths(directory: Path) -> dict[str, tuple[Path, Path]] | None:
    """{split: (images file, labels file)} when ``directory`` holds all four files; None when it
    holds none of them. Raises DatasetError naming the missing ones when it holds only some."""
    stems = [stem for pair in IDX_STEMS.values() for stem in pair]
    found = {stem: path for stem in stems if (path := _idx_file(directory, stem)) is not None}
    if not found:
        return None
    missing = [stem for stem in stems if stem not in found]
    if missing:
        raise DatasetError(
            f"{directory} lacks {', '.join(missing)} (or .gz) of the four IDX files; "
            "copy the missing files there or point --data-root at a complete copy"
        )
    return {split: (found[images], found[labels]) for split, (images, labels) in IDX_STEMS.items()}


def _load_idx_dataset(
    title: str,
    req: LoadRequest,
    subdirs: tuple[str, ...],
    system_dir: Path | None,
    hint: str,
    classes: tuple[str, ...],
) -> RawSplits:
    """The first folder of :func:`_search_dirs` holding the four IDX files. A ``--data-root`` that
    does not exist, holds none of them or only some is a DatasetError, never the system copy."""
    if req.root:
        root = Path(req.root).expanduser()
        if not root.is_dir():
            problem = "does not exist" if not root.exists() else "is not a directory"
            raise DatasetError(
                f"--data-root {root} {problem}; pass the folder that holds {title}"
                + (" or drop --data-root to use the installed copy" if system_dir is not None else "")
            )
        hint = f"put its four IDX files in {root / subdirs[0]}"
        if system_dir is not None:
            hint += " or drop --data-root to use the installed copy"
    tried = _search_dirs(req.root, subdirs, system_dir)
    for directory in tried:
        paths = _idx_paths(directory)
        if paths is not None:
            return RawSplits(_idx_split(*paths["train"], classes), _idx_split(*paths["test"], classes))
    where = (
        ", ".join(str(d) for d in tried) if tried else f"any folder (no --data-root, {DATA_ROOT_ENV} unset)"
    )
    raise DatasetError(f"{title} not found in {where}; {hint}")


@_register("fashion-mnist", "Fashion-MNIST: 28 px grayscale clothing, 10 classes, 60k train / 10k test")
def _load_fashion_mnist(req: LoadRequest) -> RawSplits:
    hint = "install it with `apt-get install dataset-fashion-mnist` or pass --data-root DIR"
    subdirs = ("fashion-mnist", "FashionMNIST/raw")
    return _load_idx_dataset(
        "Fashion-MNIST", req, subdirs, SYSTEM_DATA_DIR / "fashion-mnist", hint, FASHION_CLASSES
    )


@_register("mnist", "MNIST: 28 px grayscale digits, 10 classes, 60k train / 10k test (IDX, --data-root)")
def _load_mnist(req: LoadRequest) -> RawSplits:
    hint = f"put the four IDX files in DIR/mnist and pass --data-root DIR (or set {DATA_ROOT_ENV})"
    return _load_idx_dataset("MNIST", req, ("mnist", "MNIST/raw"), None, hint, DIGIT_CLASSES)


# --- Built-in small datasets --------------------------------------------------------------


def _float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float N x C x H x W in [0, 255] -> uint8, rounded and clamped."""
    return images.round().clamp(0, 255).to(torch.uint8)


@_register(
    "digits", "scikit-learn 8x8 digits upscaled to 16 px, 10 classes, 1438 train / 359 test", default_size=16
)
def _load_digits(req: LoadRequest) -> RawSplits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.from_numpy(digits.images).float().unsqueeze(1) * (255.0 / 16.0)  # N x 1 x 8 x 8
    resized = F.interpolate(pixels, size=(req.side, req.side), mode="bilinear", align_corners=False)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    full = ImageSet(_float_to_uint8(resized), labels, DIGIT_CLASSES)
    train, test = carve_validation(full, 0.2, seed=0)  # fixed seed: the test split never moves
    return RawSplits(train, test)


@_register(
    "synthetic",
    "random 4-class colour patterns plus noise, 512 train / 128 test, 3 channels, default 16 px",
    default_size=16,
)
def _load_synthetic(req: LoadRequest) -> RawSplits:
    size = req.side
    generator = torch.Generator().manual_seed(SYNTHETIC_SEED)
    coarse = torch.rand(SYNTHETIC_CLASSES, 3, 4, 4, generator=generator)
    prototypes = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    classes = tuple(f"pattern{k}" for k in range(SYNTHETIC_CLASSES))

    def draw(n: int) -> ImageSet:
        labels = torch.randperm(n, generator=generator) % SYNTHETIC_CLASSES
        noise = 0.15 * torch.randn(n, 3, size, size, generator=generator)
        images = (0.15 + 0.7 * prototypes[labels] + noise).clamp(0, 1) * 255.0
        return ImageSet(_float_to_uint8(images), labels, classes)

    return RawSplits(draw(512), draw(128))


# --- torchvision datasets -----------------------------------------------------------------


def _torchvision_root(req: LoadRequest) -> Path:
    return Path(req.root or os.environ.get(DATA_ROOT_ENV) or CACHE_DIR).expanduser()


def _open_torchvision(name: str, class_name: str, root: Path, download: bool, **kwargs: Any) -> Any:
    """Construct ``torchvision.datasets.<class_name>``, turning its errors into DatasetError."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, class_name)
    try:
        return dataset_class(str(root), download=download, **kwargs)
    except RuntimeError as exc:
        if download:
            raise DatasetError(
                f"{name}: download into {root} failed or left corrupt files ({exc}); "
                "check the internet connection or pass --data-root DIR"
            ) from None
        raise DatasetError(
            f"{name} not found under {root}; pass --download to fetch it (needs internet) or --data-root DIR"
        ) from None
    except OSError as exc:
        raise DatasetError(f"{name}: cannot read or download into {root}: {exc}") from None


def _load_cifar(name: str, class_name: str, req: LoadRequest) -> RawSplits:
    root = _torchvision_root(req)

    def split(train: bool) -> ImageSet:
        dataset = _open_torchvision(name, class_name, root, req.download, train=train)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        return ImageSet(images, torch.as_tensor(dataset.targets, dtype=torch.int64), tuple(dataset.classes))

    return RawSplits(split(True), split(False))


@_register("svhn", "SVHN: 32 px RGB house-number digits, 10 classes, 73k train / 26k test (torchvision)")
def _load_svhn(req: LoadRequest) -> RawSplits:
    root = _torchvision_root(req)

    def split(name: str) -> ImageSet:
        dataset = _open_torchvision("svhn", "SVHN", root, req.download, split=name)
        images = torch.from_numpy(np.ascontiguousarray(dataset.data))
        return ImageSet(images, torch.from_numpy(dataset.labels.astype(np.int64)), DIGIT_CLASSES)

    return RawSplits(split("train"), split("test"))


def _square(image: Image.Image, size: int, mode: str) -> np.ndarray:
    """Convert to ``mode``, resize the shorter side to ``size`` and centre-crop: size x size (x 3 for RGB)."""
    return np.asarray(ImageOps.fit(image.convert(mode), (size, size), method=Image.Resampling.BILINEAR))


def _load_resized(name: str, class_name: str, splits: tuple[str, str], req: LoadRequest) -> RawSplits:
    root = _torchvision_root(req)
    size = req.side

    def split(split_name: str) -> ImageSet:
        transform = partial(_square, size=size, mode="RGB")
        dataset = _open_torchvision(
            name, class_name, root, req.download, split=split_name, transform=transform
        )
        arrays, labels = [], []
        for index in range(len(dataset)):
            try:
                array, label = dataset[index]
            except Exception as exc:  # PIL reports a bad image file with many exception types
                raise DatasetError(
                    f"{name}: image {index} of the {split_name} split under {root} is unreadable ({exc}); "
                    f"delete the dataset folder and pass --download again"
                ) from None
            arrays.append(array)
            labels.append(label)
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return ImageSet(images, torch.tensor(labels, dtype=torch.int64), tuple(dataset.classes))

    train_split, test_split = splits
    return RawSplits(split(train_split), split(test_split))


for _name, _class_name, _help in (
    ("cifar10", "CIFAR10", "CIFAR-10: 32 px RGB, 10 classes, 50k train / 10k test (torchvision)"),
    ("cifar100", "CIFAR100", "CIFAR-100: 32 px RGB, 100 classes, 50k train / 10k test (torchvision)"),
):
    DATASETS.add(_name, DatasetLoader(partial(_load_cifar, _name, _class_name)), _help)

for _name, _class_name, _splits, _size, _help in (
    ("stl10", "STL10", ("train", "test"), 96, "STL-10: RGB, 10 classes, 5k train / 8k test, 96 px"),
    ("flowers102", "Flowers102", ("train", "test"), 64, "Oxford Flowers-102: RGB, 102 classes, 64 px"),
    ("fgvc-aircraft", "FGVCAircraft", ("trainval", "test"), 64, "FGVC-Aircraft: RGB, 100 variants, 64 px"),
    ("stanford-cars", "StanfordCars", ("train", "test"), 64, "Stanford Cars: RGB, 196 classes, 64 px"),
    ("dtd", "DTD", ("train", "test"), 64, "Describable Textures: RGB, 47 classes, 64 px"),
):
    DATASETS.add(
        _name, DatasetLoader(partial(_load_resized, _name, _class_name, _splits), default_size=_size), _help
    )


# --- Your own files -----------------------------------------------------------------------


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _folder_layout(folder: Path) -> tuple[list[Path], list[int] | None, tuple[str, ...] | None]:
    """(image files, labels, class names): class subfolders are labeled, a flat folder is not."""
    files = _image_files(folder)
    subdirs = [p for p in _visible(folder) if p.is_dir()]
    if files and subdirs:
        raise DatasetError(
            f"{folder} holds both image files and subfolders; pick one layout: "
            "one subfolder per class (labeled) or only image files (unlabeled)"
        )
    if files:
        return files, None, None
    if not subdirs:
        raise DatasetError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    paths, labels = [], []
    for label, subdir in enumerate(subdirs):
        class_files = _image_files(subdir)
        if not class_files:
            raise DatasetError(f"class folder {subdir} has no images")
        paths += class_files
        labels += [label] * len(class_files)
    return paths, labels, tuple(p.name for p in subdirs)


def image_folder_classes(folder: str | Path) -> tuple[str, ...] | None:
    """The class names of ``imagefolder:FOLDER`` (those of ``train/`` when it has ``train/`` and
    ``test/``), ``None`` for a flat, unlabeled folder; only lists files, decodes none, so a user's
    folder is checked at once. Raises DatasetError as the loader would (missing, empty, mixed)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise DatasetError(f"imagefolder: {path} is not a directory")
    if (path / "train").is_dir() and (path / "test").is_dir():
        path = path / "train"
    return _folder_layout(path)[2]


def _decode_images(paths: list[Path], size: int) -> torch.Tensor:
    """uint8 N x C x size x size: C = 1 when every image is grayscale, else 3 (grayscale repeated)."""
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as image:
                arrays.append(_square(image, size, "L" if image.mode in GRAY_MODES else "RGB"))
        except Exception as exc:  # PIL reports a bad image file with many exception types
            raise DatasetError(f"cannot read image {path} ({exc}); fix or remove it") from None
    if all(a.ndim == 2 for a in arrays):
        return torch.from_numpy(np.stack(arrays)).unsqueeze(1)
    rgb = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    return torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).contiguous()


def _relabel(
    folder: Path,
    labels: list[int] | None,
    classes: tuple[str, ...] | None,
    train_classes: tuple[str, ...] | None,
) -> torch.Tensor | None:
    """Test labels re-indexed into the train class list."""
    if (classes is None) != (train_classes is None):
        raise DatasetError(
            f"{folder.parent}: train/ and test/ must both have class subfolders or both be flat"
        )
    if labels is None or classes is None or train_classes is None:
        return None
    unknown = sorted(set(classes) - set(train_classes))
    if unknown:
        raise DatasetError(f"{folder} has classes missing from train/: {', '.join(unknown)}")
    return torch.tensor([train_classes.index(classes[label]) for label in labels], dtype=torch.int64)


@_register(
    "imagefolder",
    "your images, imagefolder:DIR[@SIZE]: class subfolders (labeled) or flat (unlabeled), default 32 px",
    takes_path=True,
    default_size=32,
)
def _load_imagefolder(req: LoadRequest) -> RawSplits:
    folder = Path(str(req.path)).expanduser()
    size = req.side
    if not folder.is_dir():
        raise DatasetError(f"imagefolder: {folder} is not a directory")
    split_dirs = [folder / "train", folder / "test"]
    if not all(d.is_dir() for d in split_dirs):
        paths, labels, classes = _folder_layout(folder)
        label_tensor = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        return RawSplits(ImageSet(_decode_images(paths, size), label_tensor, classes), None)
    (train_paths, train_labels, train_classes), (test_paths, test_labels, test_classes) = map(
        _folder_layout, split_dirs
    )
    images = _decode_images(train_paths + test_paths, size)  # decoded together: one channel count
    train_tensor = None if train_labels is None else torch.tensor(train_labels, dtype=torch.int64)
    test_tensor = _relabel(split_dirs[1], test_labels, test_classes, train_classes)
    n_train = len(train_paths)
    return RawSplits(
        ImageSet(images[:n_train], train_tensor, train_classes),
        ImageSet(images[n_train:], test_tensor, train_classes),
    )


@_register("npy", "uint8 array N x H x W or N x H x W x C (C = 1 or 3), unlabeled: npy:FILE", takes_path=True)
def _load_npy(req: LoadRequest) -> RawSplits:
    path = Path(str(req.path)).expanduser()
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"cannot read {path} as a .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise DatasetError(f"{path} is an .npz archive; save one array with numpy.save instead")
    if array.dtype != np.uint8:
        raise DatasetError(f"{path} holds {array.dtype} data, expected uint8")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    else:
        raise DatasetError(f"{path} has shape {array.shape}, expected N x H x W or N x H x W x C, C = 1 or 3")
    if array.shape[0] == 0 or array.shape[2] != array.shape[3]:
        raise DatasetError(f"{path} has shape {array.shape}; expected at least one square image")
    return RawSplits(ImageSet(torch.from_numpy(np.ascontiguousarray(array))), None)
