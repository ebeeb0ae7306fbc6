"""Downstream scenarios: the evaluation tasks of a multi-architecture study (arXiv 2203.08130).

A :class:`Scenario` holds three image sets:

- ``train``: labeled, what the linear probe (and kNN bank) is fitted on;
- ``test``: labeled, only ever reported on;
- ``unlabeled``: images without labels, disjoint from ``train``. Pretraining on a scenario's own
  data uses ``unlabeled`` and ``train`` together (labels dropped).

Every scenario is built with :func:`selfnas.data.datasets.load_registered`: its train split is
carved, with the seed, into ``train`` and an ``unlabeled`` part of :data:`UNLABELED_FRACTION`
(the few-shot scenario instead keeps 10 labels per class and leaves the rest unlabeled); its
test split is ``test``. ``limit`` then caps every split with the seed (stratified by class for
the labeled ones), for quick runs.

Offline scenarios (no download; Fashion-MNIST from ``apt-get install dataset-fashion-mnist``):

- ``fashion-mnist``: the 10 classes.
- ``fashion-coarse``: 5 super-classes by garment kind: tops (T-shirt/top, Pullover, Coat,
  Shirt), bottoms (Trouser), dresses (Dress), footwear (Sandal, Sneaker, Ankle boot), bags (Bag).
- ``fashion-fewshot``: 10 labeled images per class in ``train``; all other train images unlabeled.
- ``fashion-rotated``: every image rotated by 90 degrees (a domain shift of the source).
- ``fashion-inverted``: ``255 - x`` (a contrast domain shift).
- ``digits``: scikit-learn's 8x8 digits upsampled to 28 px (10 classes, 1797 images).

Online scenarios need their files under ``--data-root`` (or ``download=True``, with internet):
cifar10, cifar100, stl10, svhn, flowers102, fgvc-aircraft, stanford-cars, dtd. A missing
dataset is the loader's one-line :class:`~selfnas.errors.DatasetError`.

Your own scenarios: ``NAME=imagefolder:PATH[@SIZE]`` (:func:`parse_scenario_definition`) names a
folder with one subfolder per class (or ``train/`` and ``test/``, each with class subfolders); it
is labeled, since a scenario is probed, and needs at least 2 classes. It is passed to
``load_scenario(NAME, defined={NAME: SPEC})``, never added to the registry, so a study records it
in its plan and ``--data NAME=imagefolder:PATH`` works anywhere a data name does. A folder without
``test/`` gives a fixed, class-stratified :data:`FOLDER_TEST_FRACTION` of its images as test; the
rest is split into ``train`` and ``unlabeled`` as for the registered scenarios.

``load_scenario(..., channels=C, size=S)`` converts every split to C channels (RGB -> gray by
ITU-R 601 luma, gray -> RGB by repetition) and S x S pixels (bilinear, antialiased), so a model
pretrained on one scenario (say Fashion-MNIST, 1 x 28 x 28) can be probed on all the others.

A scenario as :class:`~selfnas.data.types.DatasetSplits`, the form a trainer and an evaluation
take, has two views, both normalised by the statistics of the pretraining pool (``unlabeled`` and
``train`` together) so a model is evaluated as it was trained: :func:`pretraining_splits` (the
pool without labels, a seeded part of it held out for label-free scores) and :func:`probe_splits`
(the labeled ``train`` and ``test``). The per-target benchmark and
:func:`selfnas.data.load_dataset` (scenario names as ``--data``) build their data with them; the
study pretrains on the same pool.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from selfnas.data.datasets import (
    DATASETS,
    FASHION_CLASSES,
    MAX_SIZE,
    MIN_SIZE,
    channel_stats,
    image_folder_classes,
    load_registered,
    parse_spec,
)
from selfnas.data.splits import carve_validation
from selfnas.data.types import DatasetSplits, ImageSet
from selfnas.errors import ConfigError, DatasetError
from selfnas.registry import Registry

#: part of a fully labeled scenario's train split that is kept without labels
UNLABELED_FRACTION = 0.1
FEWSHOT_PER_CLASS = 10
DIGITS_SIZE = 28
#: Fashion-MNIST class index -> super-class index, and the super-class names
COARSE_CLASSES = ("tops", "bottoms", "dresses", "footwear", "bags")
FASHION_TO_COARSE = (0, 1, 0, 2, 0, 3, 0, 3, 4, 3)
LUMA = (0.299, 0.587, 0.114)
CHUNK = 4096  # images resized at once: bounds the float copy to a few hundred MB
#: share of a user's folder held out as its test split when the folder has no test/ of its own
FOLDER_TEST_FRACTION = 0.2
FOLDER_KINDS = ("imagefolder",)  # the dataset kinds a user scenario may name: labeled folders
#: a user scenario's name: it becomes a file name part (cells/ARCH.NAME.json), so no dots or slashes
SCENARIO_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
DEFINITION_HINT = "NAME=imagefolder:PATH[@SIZE], e.g. pets=imagefolder:~/pets"


@dataclass(frozen=True)
class Scenario:
    """A downstream task: probe on ``train``, report on ``test``, pretrain on ``unlabeled`` + ``train``."""

    name: str
    description: str
    unlabeled: ImageSet  # labels=None
    train: ImageSet  # labeled, for the probe
    test: ImageSet  # labeled, only reported

    @property
    def num_classes(self) -> int:
        return self.train.num_classes


ScenarioLoad = Callable[[str | None, int, bool, int | None], Scenario]


@dataclass(frozen=True)
class ScenarioLoader:
    """A registered scenario: ``loader(root, seed, download, limit) -> Scenario``; ``offline`` is
    true when it needs no download (its data ship with the system or with scikit-learn)."""

    load: ScenarioLoad
    offline: bool

    def __call__(self, root: str | None, seed: int, download: bool, limit: int | None) -> Scenario:
        return self.load(root, seed, download, limit)


SCENARIOS: Registry[ScenarioLoader] = Registry("scenario")
_ORDER: list[str] = []  # registration order: the source scenario (fashion-mnist) first


def _register(name: str, description: str, load: ScenarioLoad, offline: bool) -> None:
    SCENARIOS.add(name, ScenarioLoader(load, offline), description)
    _ORDER.append(name)


def scenario_names(offline_only: bool = False) -> list[str]:
    """Registered scenario names, offline ones first, ``fashion-mnist`` first of all."""
    return [n for n in _ORDER if not offline_only or SCENARIOS.get(n).offline]


def load_scenario(
    name: str,
    root: str | None = None,
    seed: int = 0,
    download: bool = False,
    limit: int | None = None,
    channels: int | None = None,
    size: int | None = None,
    defined: Mapping[str, str] | None = None,
) -> Scenario:
    """Scenario ``name``; with ``channels`` / ``size``, every split converted to that shape.
    ``defined`` maps the names of the user's own scenarios to their folder specs (see
    :func:`parse_scenario_definition`); any other name is looked up in :data:`SCENARIOS`.

    Raises RegistryError for an unknown name, DatasetError for missing data, ConfigError for
    a bad ``limit`` / ``channels`` / ``size``.
    """
    if defined is not None and name in defined:
        loader = ScenarioLoader(partial(folder_scenario, name, defined[name]), offline=True)
    else:
        loader = SCENARIOS.get(name)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"scenario limit must be a positive number of images, got {limit!r}")
    if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
        raise ConfigError(f"scenario channels must be 1 or 3, got {channels!r}")
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE
    ):
        raise ConfigError(f"scenario image size must be an int in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    scenario = loader(root, seed, download, limit)
    if channels is None and size is None:
        return scenario
    convert = lambda images: convert_images(images, channels, size)  # noqa: E731
    return Scenario(
        scenario.name,
        scenario.description,
        convert(scenario.unlabeled),
        convert(scenario.train),
        convert(scenario.test),
    )


# --- a scenario as training / evaluation data ------------------------------------------------


def pretraining_pool(scenario: Scenario) -> ImageSet:
    """The images that pretrain on ``scenario``: its unlabeled images, then its train images, no labels."""
    return ImageSet(torch.cat([scenario.unlabeled.images, scenario.train.images]))  # N x C x H x W uint8


def pretraining_splits(scenario: Scenario, val_fraction: float = 0.0, seed: int = 0) -> DatasetSplits:
    """SSL data of ``scenario``: :func:`pretraining_pool` as ``train``, of which a seeded
    ``val_fraction`` is carved as an unlabeled ``val`` (what label-free search scores are measured
    on; ``None`` at 0); ``test`` is the scenario's labeled test split, never trained on. ``mean`` /
    ``std`` are the whole pool's, as in :func:`probe_splits`."""
    pool = pretraining_pool(scenario)
    mean, std = channel_stats(pool.images)
    train, val = carve_validation(pool, val_fraction, seed)
    return DatasetSplits(scenario.name, train, val, scenario.test, mean, std)


def probe_splits(scenario: Scenario) -> DatasetSplits:
    """Evaluation data of ``scenario``: the probe is fitted on its labeled ``train`` and reported
    on its ``test`` (no ``val``: the scenario keeps no labeled images besides these); ``mean`` /
    ``std`` are those of :func:`pretraining_splits`, so a model pretrained there sees its inputs
    normalised alike."""
    mean, std = channel_stats(pretraining_pool(scenario).images)
    return DatasetSplits(scenario.name, scenario.train, None, scenario.test, mean, std)


# --- image conversion ----------------------------------------------------------------------


def convert_images(images: ImageSet, channels: int | None = None, size: int | None = None) -> ImageSet:
    """``images`` with ``channels`` channels and ``size`` x ``size`` pixels (None keeps either)."""
    x = images.images  # N x C x H x W uint8
    want_c = images.channels if channels is None else channels
    want_s = x.shape[-1] if size is None else size
    if (want_c, want_s, want_s) == tuple(x.shape[1:]):
        return images
    parts = [_convert_chunk(x[i : i + CHUNK], want_c, want_s) for i in range(0, len(x), CHUNK)]
    out = torch.cat(parts) if parts else x.new_zeros((0, want_c, want_s, want_s))
    return ImageSet(out.contiguous(), images.labels, images.classes)


def _convert_chunk(x: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 n x C x H x W -> uint8 n x channels x size x size."""
    y = x.float()  # n x C x H x W in [0, 255]
    if y.shape[1] == 3 and channels == 1:
        y = torch.einsum("nchw,c->nhw", y, torch.tensor(LUMA)).unsqueeze(1)  # n x 1 x H x W
    elif y.shape[1] == 1 and channels == 3:
        y = y.expand(-1, 3, -1, -1)  # n x 3 x H x W
    if y.shape[-2:] != (size, size):
        y = F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8)


# --- building blocks -------------------------------------------------------------------------


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _drop_labels(images: ImageSet) -> ImageSet:
    return ImageSet(images.images)


def stratified_limit(images: ImageSet, limit: int | None, seed: int) -> ImageSet:
    """A seeded subset of at most ``limit`` images with class shares kept (largest remainders);
    unlabeled sets get a plain seeded subset. Order is kept."""
    n = len(images)
    if limit is None or limit >= n:
        return images
    if images.labels is None:
        index = torch.randperm(n, generator=_generator(seed))[:limit]
        return images.subset(index.sort().values)
    return images.subset(_stratified_index(images.labels, limit, seed))


def _stratified_index(labels: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``limit`` of the N ``labels``, each class's share kept (largest remainders)."""
    n = len(labels)
    counts = torch.bincount(labels)
    quota = counts.double() * limit / n
    take = quota.floor().long()
    remainder = limit - int(take.sum())
    if remainder > 0:  # the classes with the largest fractional parts get one more
        order = torch.argsort(quota - take.double(), descending=True, stable=True)
        take[order[:remainder]] += 1
    perm = torch.randperm(n, generator=_generator(seed))
    keep = [perm[labels[perm] == k][: int(take[k])] for k in range(len(counts))]
    return torch.cat(keep).sort().values


def _stratified_split(images: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(the rest, a seeded class-stratified ``fraction`` of labeled ``images``), order kept."""
    assert images.labels is not None
    part = max(1, round(len(images) * fraction))
    if part >= len(images):
        raise DatasetError(f"{len(images)} images are too few to hold out {fraction:.0%} of them as test")
    index = _stratified_index(images.labels, part, seed)
    rest = torch.ones(len(images), dtype=torch.bool)
    rest[index] = False
    return images.subset(rest.nonzero().squeeze(1)), images.subset(index)


def _per_class(images: ImageSet, per_class: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """(``per_class`` seeded images of each class, all the others)."""
    assert images.labels is not None
    labels = images.labels
    perm = torch.randperm(len(images), generator=_generator(seed))
    chosen = []
    for k in range(images.num_classes):
        members = perm[labels[perm] == k]
        if len(members) < per_class:
            name = images.classes[k] if images.classes else str(k)
            raise DatasetError(f"class {name!r} has {len(members)} train images; few-shot needs {per_class}")
        chosen.append(members[:per_class])
    index = torch.cat(chosen).sort().values
    rest = torch.ones(len(images), dtype=torch.bool)
    rest[index] = False
    return images.subset(index), images.subset(rest.nonzero().squeeze(1))


def _from_dataset(
    name: str,
    description: str,
    spec: str,
    root: str | None,
    seed: int,
    download: bool,
    limit: int | None,
    transform: Callable[[ImageSet], ImageSet] | None = None,
    fewshot: int | None = None,
) -> Scenario:
    """A scenario of dataset ``spec``: its train split split into probe train and unlabeled (or
    ``fewshot`` labels per class), its test split as test, each capped by ``limit``."""
    if fewshot is None:
        splits = load_registered(
            spec, root=root, download=download, val_fraction=UNLABELED_FRACTION, seed=seed
        )
        train, unlabeled = splits.train, splits.val
    else:
        splits = load_registered(spec, root=root, download=download, val_fraction=0.0, seed=seed)
        train, unlabeled = _per_class(splits.train, fewshot, seed)
    if splits.test is None or splits.test.labels is None or train.labels is None or unlabeled is None:
        raise DatasetError(f"scenario {name}: dataset {spec} has no labeled train and test splits")
    test = splits.test
    if transform is not None:
        unlabeled, train, test = transform(unlabeled), transform(train), transform(test)
    return _limited(name, description, unlabeled, train, test, limit, seed)


def _limited(
    name: str,
    description: str,
    unlabeled: ImageSet,
    train: ImageSet,
    test: ImageSet,
    limit: int | None,
    seed: int,
) -> Scenario:
    """The scenario of these splits, ``unlabeled`` without labels, each capped by ``limit``."""
    return Scenario(
        name,
        description,
        stratified_limit(_drop_labels(unlabeled), limit, seed),
        stratified_limit(train, limit, seed),
        stratified_limit(test, limit, seed),
    )


def _coarse(images: ImageSet) -> ImageSet:
    labels = None if images.labels is None else torch.tensor(FASHION_TO_COARSE)[images.labels]
    return ImageSet(images.images, labels, COARSE_CLASSES if labels is not None else None)


def _rotate(images: ImageSet) -> ImageSet:
    rotated = torch.rot90(images.images, 1, dims=(2, 3)).contiguous()  # N x C x W x H, square: same shape
    return ImageSet(rotated, images.labels, images.classes)


def _invert(images: ImageSet) -> ImageSet:
    return ImageSet(255 - images.images, images.labels, images.classes)


def _scenario(name: str, description: str, spec: str, offline: bool, **options: Any) -> None:
    def load(root: str | None, seed: int, download: bool, limit: int | None) -> Scenario:
        return _from_dataset(name, description, spec, root, seed, download, limit, **options)

    _register(name, description, load, offline)


# --- your own folders -------------------------------------------------------------------------


def is_scenario_definition(text: str) -> bool:
    """True for ``NAME=...``: the text before the first ``=`` is a bare name (so a dataset spec
    whose path holds ``=``, such as ``imagefolder:/data/a=b``, is none)."""
    name, sep, _ = text.partition("=")
    return bool(sep) and SCENARIO_NAME_RE.fullmatch(name.strip()) is not None


def parse_scenario_definition(text: str) -> tuple[str, str]:
    """``NAME=imagefolder:PATH[@SIZE]`` -> (NAME, the spec with PATH absolute, see
    :func:`check_scenario_definition`); anything else is a one-line ConfigError."""
    name, sep, spec = (part.strip() for part in text.partition("="))
    if not sep or not name or not spec:
        raise ConfigError(f"bad scenario {text!r}; expected {DEFINITION_HINT}")
    return name, check_scenario_definition(name, spec)


def parse_scenario_definitions(texts: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Several definitions (repeated ``--scenario``) as {name: spec}; a name given twice is an error."""
    out: dict[str, str] = {}
    for text in texts:
        name, spec = parse_scenario_definition(text)
        if name in out:
            raise ConfigError(f"scenario {name!r} is defined twice; give each folder its own name")
        out[name] = spec
    return out


def check_scenario_definition(name: str, spec: str) -> str:
    """``spec`` with its folder made absolute (a study resumed elsewhere finds it), when ``name``
    may name the user's folder ``spec``. ConfigError when the name is malformed or taken by a
    registered scenario or dataset (one name, one meaning), or ``spec`` is no ``imagefolder:``."""
    if not SCENARIO_NAME_RE.fullmatch(name):
        raise ConfigError(f"bad scenario name {name!r}: use letters, digits, - and _ ({DEFINITION_HINT})")
    if name in SCENARIOS or name in DATASETS:
        what = "scenario" if name in SCENARIOS else "dataset"
        raise ConfigError(f"scenario name {name!r} is taken by a registered {what}; pick another name")
    try:
        parsed = parse_spec(spec)
    except DatasetError:
        parsed = None
    if parsed is None or parsed.name not in FOLDER_KINDS or not parsed.path:
        raise ConfigError(f"scenario {name}: {spec!r} is no labeled folder; expected {DEFINITION_HINT}")
    folder = os.path.abspath(os.path.expanduser(parsed.path))
    return f"{parsed.name}:{folder}" + ("" if parsed.size is None else f"@{parsed.size}")


def check_folder(name: str, spec: str) -> tuple[str, ...]:
    """The class names of scenario ``name``'s folder (files listed, none decoded: quick). A
    DatasetError when the folder is missing, flat (unlabeled: nothing to probe) or has fewer than
    2 classes."""
    folder = str(parse_spec(spec).path)
    if not os.path.isdir(folder):
        raise DatasetError(
            f"scenario {name}: folder {folder} does not exist; give a folder with one subfolder per class"
        )
    classes = image_folder_classes(folder)
    if classes is None:
        raise DatasetError(
            f"scenario {name}: {folder} has no class subfolders; a scenario is probed with labels, "
            "so put each class's images in a subfolder of its own"
        )
    if len(classes) < 2:
        raise DatasetError(
            f"scenario {name}: {folder} has {len(classes)} class ({', '.join(classes)}); "
            "a probe needs at least 2 classes, one subfolder each"
        )
    return classes


def folder_scenario(
    name: str, spec: str, root: str | None, seed: int, download: bool, limit: int | None
) -> Scenario:
    """Scenario ``name`` of the user's labeled folder ``spec`` (see the module doc)."""
    classes = check_folder(name, spec)
    splits = load_registered(spec, root=root, download=download, val_fraction=0.0, seed=seed)
    train, test = splits.train, splits.test
    if test is None:  # a fixed seed: the test split never moves with the study's seed
        train, test = _stratified_split(train, FOLDER_TEST_FRACTION, seed=0)
    train, unlabeled = carve_validation(train, UNLABELED_FRACTION, seed)
    assert unlabeled is not None
    description = f"your folder {parse_spec(spec).path}, {len(classes)} classes"
    return _limited(name, description, unlabeled, train, test, limit, seed)


# --- the registry ------------------------------------------------------------------------------

assert len(FASHION_TO_COARSE) == len(FASHION_CLASSES)

_scenario("fashion-mnist", "Fashion-MNIST, 10 clothing classes (28 px gray)", "fashion-mnist", True)
_scenario(
    "fashion-coarse",
    "Fashion-MNIST in 5 super-classes: tops, bottoms, dresses, footwear, bags",
    "fashion-mnist",
    True,
    transform=_coarse,
)
_scenario(
    "fashion-fewshot",
    f"Fashion-MNIST with {FEWSHOT_PER_CLASS} labels per class, the rest unlabeled",
    "fashion-mnist",
    True,
    fewshot=FEWSHOT_PER_CLASS,
)
_scenario(
    "fashion-rotated",
    "Fashion-MNIST rotated by 90 degrees (domain shift)",
    "fashion-mnist",
    True,
    transform=_rotate,
)
_scenario(
    "fashion-inverted",
    "Fashion-MNIST with inverted intensities, 255 - x (domain shift)",
    "fashion-mnist",
    True,
    transform=_invert,
)
_scenario("digits", "scikit-learn 8x8 digits upsampled to 28 px, 10 classes", f"digits@{DIGITS_SIZE}", True)
for _name, _description in (
    ("cifar10", "CIFAR-10, 10 classes (32 px RGB)"),
    ("cifar100", "CIFAR-100, 100 classes (32 px RGB)"),
    ("stl10", "STL-10, 10 classes (96 px RGB)"),
    ("svhn", "SVHN house numbers, 10 classes (32 px RGB)"),
    ("flowers102", "Oxford Flowers-102, 102 classes (64 px RGB)"),
    ("fgvc-aircraft", "FGVC-Aircraft, 100 variants (64 px RGB)"),
    ("stanford-cars", "Stanford Cars, 196 classes (64 px RGB)"),
    ("dtd", "Describable Textures, 47 classes (64 px RGB)"),
):
    _scenario(_name, _description, _name, False)
