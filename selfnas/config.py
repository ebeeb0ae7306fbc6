"""Validated run configuration: TOML or YAML files plus ``key.sub=value`` CLI overrides."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from selfnas.errors import ConfigError
from selfnas.methods import METHOD_NAMES, METHOD_RECORDS, MethodRecord, method_record
from selfnas.score_records import SEARCH_SCORES, ScoreRecord, score_record


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Strict):
    name: str = Field(
        "fashion-mnist", description="dataset spec: name, imagefolder:PATH, npy:PATH, name@SIZE"
    )
    root: str | None = Field(None, description="directory holding the dataset files")
    download: bool = Field(False, description="allow torchvision datasets to download (needs internet)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of train carved out as validation")
    train_limit: int | None = Field(None, ge=1, description="use at most this many training images")


class ModelConfig(_Strict):
    backbone: str = "resnet_small"
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)


#: every method's hyper-parameter keywords, in record order (``method.hparams`` help)
_HPARAM_NAMES = ", ".join(dict.fromkeys(p.name for r in METHOD_RECORDS.values() for p in r.hyper_parameters))


class MethodConfig(_Strict):
    """The SSL method: ``name`` picks its record (:attr:`spec`), the rest sizes its heads."""

    name: Literal[METHOD_NAMES] = "simsiam"  # type: ignore[valid-type]  # the method records' names
    proj_hidden: int = Field(512, ge=1, le=65536)
    proj_out: int = Field(128, ge=1, le=65536)
    pred_hidden: int = Field(64, ge=1, le=65536)
    projector: dict[str, Any] | None = Field(None, description="head spec JSON; default: the method's own")
    predictor: dict[str, Any] | None = None
    hparams: dict[str, float | int] = Field(
        default_factory=dict, description=f"method hyper-parameters: {_HPARAM_NAMES}"
    )
    per_view_bn: bool | None = Field(
        None,
        description="BatchNorm statistics per view (true) or over both views (false) in the one batched "
        "forward; default: as the method's reference code (simclr: both views, the others: per view)",
    )

    @property
    def spec(self) -> MethodRecord:
        """The method's record (class, hyper-parameters, defaults, heads, augmentations): the one
        place a method's name is resolved; code below passes this object."""
        return method_record(self.name)


class OptimConfig(_Strict):
    epochs: float = Field(10, gt=0, le=10000)
    batch_size: int = Field(256, ge=2, le=65536)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float | None = Field(None, gt=0, le=100, description="base LR per 256 images; default per method")
    weight_decay: float | None = Field(None, ge=0, le=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    warmup_epochs: float = Field(1.0, ge=0)
    fix_predictor_lr: bool = Field(
        False,
        description="keep the predictor at the peak LR (no warm-up or cosine), as SimSiam's fix_pred_lr",
    )


class RunConfig(_Strict):
    seed: int = Field(0, ge=0, lt=2**31)
    device: str = "auto"
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="fp32, or bf16 autocast (weights, optimizer, BatchNorm statistics and losses stay "
        "fp32); auto: bf16 on CUDA or a CPU with native bf16 (avx512_bf16 / amx_bf16), else fp32",
    )
    channels_last: bool = True
    compile: bool = False
    checkpoint_every: int = Field(200, ge=1, description="steps between resumable checkpoints")
    log_every: int = Field(20, ge=1, description="steps between metric lines")
    knn_every: int = Field(
        1, ge=0, description="epochs between kNN monitors on the validation split; 0 = off"
    )
    knn_bank: int = Field(10000, ge=1, description="train images in the kNN monitor's memory bank")
    eval_at_end: bool = True
    eval_train_limit: int | None = Field(
        None, ge=1, description="evaluation: seeded subset of train images (kNN bank, probe); None = all"
    )
    eval_test_limit: int | None = Field(
        None, ge=1, description="evaluation: seeded subset of each held-out split; None = all"
    )
    threads: int | None = Field(None, ge=1, le=1024)
    nan_policy: Literal["stop", "rollback"] = Field(
        "rollback",
        description="on a NaN/inf loss or weight: stop, or reload the last good checkpoint with a lower LR",
    )
    nan_retries: int = Field(3, ge=0, le=100, description="rollbacks before a NaN stops the run")
    nan_lr_backoff: float = Field(0.5, gt=0, le=1, description="LR multiplier at each NaN rollback")
    trackers: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="experiment trackers fed with every metric line (pip install 'selfnas[tracking]')",
    )

    @model_validator(mode="before")
    @classmethod
    def _amp_is_precision(cls, data: Any) -> Any:
        """``run.amp``, the setting ``run.precision`` replaced, read with the meaning it had."""
        if not isinstance(data, dict) or "amp" not in data:
            return data
        data = dict(data)
        amp = data.pop("amp")
        if "precision" in data:
            raise PydanticCustomError(
                "amp", "amp is the old name of run.precision; drop run.amp and keep run.precision"
            )
        if not isinstance(amp, bool):
            raise PydanticCustomError("amp", "amp must be true or false (better: set run.precision instead)")
        data["precision"] = legacy_amp_precision(amp, data.get("device", "auto"))
        return data


def legacy_amp_precision(amp: bool, device: object) -> str:
    """The ``run.precision`` an old config's ``run.amp`` meant: amp was bf16 autocast on CUDA only,
    so ``amp: true`` is bf16 where the run's device is CUDA and fp32 on the CPU (old runs resume
    and re-evaluate as they ran); ``amp: false`` is fp32."""
    if not amp or not isinstance(device, str) or device == "cpu":
        return "fp32"
    if device.startswith("cuda"):
        return "bf16"
    if device != "auto":
        return "fp32"  # not a device: run.device's own check says so
    import torch  # only for an old config on device auto: CUDA's presence decided what amp did

    return "bf16" if torch.cuda.is_available() else "fp32"


#: the candidate ops of every searched head layer (NASiam's, with Mish); one home, the head space reads it
HEAD_SEARCH_OPS = (
    "identity", "max_pool_3", "avg_pool_3", "linear_bn_relu",
    "linear_bn_silu", "linear_bn_hardswish", "linear_bn_elu", "linear_bn_mish",
)  # fmt: skip


class _SearchKind(_Strict):
    """What is searched and how: the space and the strategy (the other parts read them)."""

    space: Literal["heads", "cells", "resnet-variants", "mobilenet-variants"] = "heads"
    strategy: Literal["darts", "tpe", "random", "evolution"] = "darts"


class DartsSettings(_Strict):
    """``search.strategy=darts``: the supernet's architecture step and its collapse remedies."""

    order: Literal[1, 2] = Field(1, description="DARTS first order, or second order (unrolled)")
    arch_lr: float = Field(1e-3, gt=0, le=1)
    arch_weight_decay: float = Field(1e-3, ge=0, le=1)
    warmup_epochs: float = Field(0.0, ge=0, description="epochs with frozen alphas (collapse remedy)")
    beta_decay: float = Field(0.0, ge=0, description="beta-DARTS regulariser weight on logsumexp(alpha)")
    max_parameter_free: int | None = Field(None, ge=0, description="cap on parameter-free ops per head")
    entropy_stop: float | None = Field(
        None, gt=0, description="freeze alphas once their mean entropy (nats) falls below this"
    )


class HeadSpaceSettings(_Strict):
    """``search.space=heads``: the projector / predictor supernets (NASiam's setting)."""

    projector_layers: int = Field(6, ge=1, le=32)
    predictor_layers: int = Field(4, ge=1, le=32)
    width: int | None = Field(
        None, ge=1, le=65536, description="projector search width; default backbone width"
    )
    pred_width: int | None = Field(
        None, ge=1, le=65536, description="predictor search width; default proj_out"
    )
    ops: list[str] = Field(
        default_factory=lambda: list(HEAD_SEARCH_OPS), min_length=1, description="head ops"
    )
    layout: Literal["selfnas", "nasiam"] = Field(
        "selfnas",
        description="heads: selfnas (every method alike) or nasiam (NASiam's layer counts per method, "
        "BatchNorm after pools, a proj_out/4 predictor bottleneck)",
    )


class CellSpaceSettings(_Strict):
    """``search.space=cells``: the DARTS cell network (CSNAS's setting)."""

    nodes: int = Field(4, ge=1, le=8, description="cells: intermediate nodes per cell")
    cell_width: int = Field(16, ge=1, le=1024, description="cells: channels C of the first cell")
    cell_layers: int = Field(
        8, ge=3, le=64, description="cells: cells in the network (reductions at 1/3, 2/3)"
    )


class StudySettings(_Strict):
    """``search.strategy=tpe|random|evolution``: the Optuna study (trials, score, pruner, screening,
    size caps, storage and workers); also the variant spaces' scale."""

    trials: int = Field(20, ge=1, le=100000, description="tpe/random/evolution: trials in the study")
    trial_epochs: float = Field(2.0, gt=0, le=1000, description="tpe/random/evolution: pretraining per trial")
    score: Literal[SEARCH_SCORES] = Field(  # type: ignore[valid-type]  # the score records' selectable names
        "view_retrieval",
        description="trial score: label-free (default: view retrieval, the best mean Spearman with linear "
        "probe accuracy over the ground-truth tables, benchmarks/RESULTS.md), or knn (a supervised proxy)",
    )
    label_eval: bool = Field(
        True,
        description="measure each finished trial's kNN / linear accuracy on val (reported, never selects)",
    )
    probe_limit: int = Field(5000, ge=10, description="train images for each trial's kNN bank / probe")
    scale: Literal["small", "full"] = Field(
        "small", description="resnet/mobilenet variants: small (28-32 px, CPU) or full (ImageNet size)"
    )
    space_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="resnet/mobilenet variants: the grid, as a ground-truth table's table.space_kwargs "
        "(blocks, bottleneck_blocks, widths, groups, block_types | repeats, width_mults); "
        "default: the scale's grid",
    )
    pruner: Literal["none", "halving", "hyperband"] = "halving"
    reduction_factor: int = Field(
        2, ge=2, le=16, description="halving / hyperband: keep 1 in this many trials at each rung"
    )
    min_epochs: int = Field(1, ge=1, description="halving / hyperband: epochs before a trial can be pruned")
    startup_trials: int = Field(5, ge=0, description="TPE: random trials before modelling")
    screen: int = Field(
        0,
        ge=0,
        le=100000,
        description="tpe/random/evolution: random candidates scored at initialisation (no training) "
        "before the first trial; the best search.screen_keep are the study's first trials (0: off; "
        "quickstart and benchmarks/search_vs_random.py use 24-40)",
    )
    screen_keep: int = Field(2, ge=1, description="screened candidates that become the first trials")
    max_params: int | None = Field(
        None, ge=1, description="studies: skip candidates whose backbone has more trainable parameters"
    )
    max_flops: int | None = Field(
        None, ge=1, description="studies: skip candidates whose backbone needs more FLOPs per image"
    )
    population: int = Field(8, ge=2, description="evolution: population size")
    storage: str | None = Field(
        None,
        description="Optuna storage: sqlite:///F, postgresql://..., journal:FILE; default sqlite in the run",
    )
    study_name: str = Field(
        "selfnas",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Optuna study name; processes with the same storage and name share the study",
    )
    n_workers: int = Field(1, ge=1, le=64, description="tpe/random/evolution: local worker processes")


class SearchConfig(StudySettings, CellSpaceSettings, HeadSpaceSettings, DartsSettings, _SearchKind):
    """Architecture search settings (``selfnas search``): one flat ``search`` section, defined here
    in parts by what each setting is for (fields validate in the order kind, DARTS, heads, cells,
    study)."""

    @property
    def score_spec(self) -> ScoreRecord:
        """The record of ``score`` (direction, family, how a study's objective reads it): the one
        place the score's name is resolved; code below passes this object."""
        return score_record(self.score)

    @field_validator("storage", mode="before")
    @classmethod
    def _storage_url(cls, v: object) -> object:
        return check_storage_url(v)

    @field_validator("layout")
    @classmethod
    def _layout_fits(cls, v: str, info: Any) -> str:
        """``nasiam`` has NASiam's own layer counts: the selfnas ones stay at their defaults."""
        if v == "selfnas":
            return v
        if info.data.get("space", "heads") != "heads":
            raise PydanticCustomError(
                "head_layout", "search.layout=nasiam applies to search.space=heads only"
            )
        defaults = {k: cls.model_fields[k].default for k in ("projector_layers", "predictor_layers")}
        changed = [k for k, default in defaults.items() if info.data.get(k, default) != default]
        if changed:
            raise PydanticCustomError(
                "head_layout",
                "search.layout=nasiam uses NASiam's layer counts (projector 6, MoCo 4; predictor 4); "
                "drop search.{field} (a depth of the selfnas layout)",
                {"field": changed[0]},
            )
        return v


STORAGE_FORMS = "sqlite:///PATH, postgresql://USER@HOST[:PORT]/DB or journal:PATH"


def _storage_text(value: object) -> str:
    """The text a non-string ``--storage`` value was read from (YAML turns ``x:::`` into a mapping)."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, item),) = value.items()
        return f"{key}:" if item is None else f"{key}: {item}"
    return str(value)


def check_storage_url(value: object) -> object:
    """Refuse a ``search.storage`` that is none of the accepted forms, saying what is wrong with it;
    None (the run's own SQLite file) and accepted URLs pass unchanged. Only the form is checked
    here: whether the database answers and the journal's folder exists are checked by the search
    before it writes anything (:func:`selfnas.nas.optuna.optuna_search.storage_url`)."""
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else _storage_text(value)
    problem = _storage_problem(text)
    if problem is None and not isinstance(value, str):
        problem = f"{text!r} is not a storage URL"
    if problem is not None:
        raise PydanticCustomError("storage_url", "{problem}; use " + STORAGE_FORMS, {"problem": problem})
    return text


def _storage_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a storage URL, or None when it has an accepted form."""
    scheme, colon, rest = url.partition(":")
    if not colon or not scheme:
        return f"{url!r} is not a storage URL: it has no scheme"
    if scheme == "journal":
        return None if rest.strip() else f"{url!r} names no journal file"
    if scheme == "sqlite":
        if rest.startswith("///") and rest[3:].strip():
            return None
        return f"{url!r} names no database file (SQLite needs three slashes and a path)"
    if scheme == "postgresql" or scheme.startswith("postgresql+"):
        return None if rest.startswith("//") and rest[2:].strip("/ ") else f"{url!r} names no database server"
    return f"{url!r} has the unknown scheme {scheme!r}"


#: the evaluation settings of DARTS (Liu et al., ICLR 2019; quark0/darts ``cnn/train.py``) on CIFAR-10,
#: as ``supervised`` keys; with ``model.backbone=darts_cells`` and ``backbone_kwargs={width: 36, layers: 20}``
DARTS_CIFAR_SUPERVISED: dict[str, Any] = {
    "epochs": 600, "batch_size": 96, "lr": 0.025, "momentum": 0.9, "nesterov": False,
    "weight_decay": 3e-4, "grad_clip": 5.0, "crop_padding": 4, "flip": True, "cutout": 16,
    "drop_path": 0.2, "auxiliary": True, "auxiliary_weight": 0.4, "label_smoothing": 0.0,
}  # fmt: skip


class SupervisedConfig(_Strict):
    """Supervised training from scratch with labels (``selfnas train --supervised``): the evaluation
    phase of DARTS / CSNAS. The defaults are a short CPU run (5 epochs, regularisers off);
    :data:`DARTS_CIFAR_SUPERVISED` holds DARTS's CIFAR-10 values (named in each description)."""

    epochs: float = Field(5, gt=0, le=10000, description="training epochs (DARTS: 600)")
    batch_size: int = Field(96, ge=2, le=65536, description="images per step (DARTS: 96)")
    lr: float = Field(0.025, gt=0, le=100, description="peak LR, cosine to 0, not per 256 (DARTS: 0.025)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (DARTS: 0.9)")
    nesterov: bool = Field(False, description="Nesterov momentum (DARTS: off)")
    weight_decay: float = Field(3e-4, ge=0, le=1, description="on every parameter (DARTS: 3e-4)")
    grad_clip: float | None = Field(5.0, gt=0, description="max gradient norm; None = off (DARTS: 5)")
    crop_padding: int = Field(4, ge=0, le=64, description="random crop after zero padding (DARTS: 4)")
    flip: bool = Field(True, description="random horizontal flip (DARTS: on)")
    cutout: int = Field(0, ge=0, le=1024, description="cutout square side in pixels; 0 = off (DARTS: 16)")
    drop_path: float = Field(
        0.0, ge=0, lt=1, description="final drop-path probability, raised linearly from 0 (DARTS: 0.2)"
    )
    auxiliary: bool = Field(False, description="auxiliary head at 2/3 depth, darts_cells only (DARTS: on)")
    auxiliary_weight: float = Field(0.4, ge=0, le=100, description="auxiliary loss weight (DARTS: 0.4)")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="(DARTS: 0 on CIFAR, 0.1 on ImageNet)")
    precise_bn: bool = Field(
        True,
        description="after each epoch, recompute BatchNorm statistics as the average over 4,096 clean "
        "training images before measuring (DARTS: off, its 600 epochs need no correction)",
    )


FINETUNE_LABELS_HELP = "'1%', '10%', '100%' (any share in (0, 100]) or an int: labels per class"


def check_label_budget(value: object) -> str | int:
    """A fine-tuning label budget: ``"N%"`` of the train split with 0 < N <= 100, or a positive int of
    labels per class (digits as text too: ``--labels 5``); anything else raises ``PydanticCustomError``
    (one line, names the forms)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value) < 10:
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 1:
            return value
        problem = f"{value} labels per class is not positive"
    elif isinstance(value, str) and value.strip().endswith("%"):
        number = value.strip()[:-1].strip()
        try:
            share = float(number)
        except ValueError:
            share = None
        if (
            share is not None
            and 0 < share <= 100
            and number.isascii()
            and number.replace(".", "", 1).isdigit()
        ):
            return f"{number}%"
        problem = f"{value.strip()[:20]!r} is not a share in (0%, 100%]"
    else:
        problem = f"{str(value)[:20]!r} is neither a share nor a count"
    raise PydanticCustomError("labels", "{problem}; use " + FINETUNE_LABELS_HELP, {"problem": problem})


class FinetuneConfig(_Strict):
    """Fine-tuning a pretrained backbone end to end with a linear head on few labels (``selfnas
    finetune``), as the semi-supervised protocol of SimCLR / BYOL: SGD with Nesterov momentum, no
    weight decay, cosine, a few epochs, a smaller LR for the backbone than for the head; the
    validation split selects the epoch. Defaults: a short CPU run."""

    source: str | None = Field(None, description="the pretrained run whose backbone is fine-tuned")
    labels: str | int = Field("10%", description="labeled train images: " + FINETUNE_LABELS_HELP)
    label_seed: int | None = Field(None, ge=0, lt=2**31, description="label subset seed; default run.seed")
    epochs: float = Field(5, gt=0, le=10000, description="fine-tuning epochs (SimCLR: 60 at 1%, 30 at 10%)")
    batch_size: int = Field(64, ge=2, le=65536, description="images per step")
    lr: float = Field(0.05, gt=0, le=100, description="peak LR of the linear head, cosine to 0")
    backbone_lr_ratio: float = Field(0.1, ge=0, le=1, description="the backbone's LR as a share of lr")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(0.0, ge=0, le=1, description="(SimCLR fine-tuning: none)")
    crop_padding: int = Field(4, ge=0, le=64, description="random crop after zero padding")
    flip: bool = Field(True, description="random horizontal flip")
    head_init: Literal["probe", "random"] = Field(
        "probe",
        description="the linear head's start: the linear probe of the frozen features on the labeled "
        "subset (LP-FT, Kumar et al. ICLR 2022), or random",
    )
    precise_bn: bool = Field(
        True,
        description="after each epoch, recompute BatchNorm statistics on the labeled images before measuring",
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: object) -> object:
        return check_label_budget(v)


class TrainConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    search: SearchConfig | None = None
    supervised: SupervisedConfig | None = None
    finetune: FinetuneConfig | None = None

    @field_validator("data")
    @classmethod
    def _data_name(cls, v: DataConfig) -> DataConfig:
        if not v.name.strip():
            raise ValueError("data.name must not be empty")
        return v


def first_error(exc: ValidationError) -> str:
    """The first validation error as one line: ``where: what``."""
    err = exc.errors()[0]
    # a key with a newline or other control characters is shown quoted: the error stays one line
    where = ".".join(p if isinstance(p, str) and p.isprintable() else repr(p) for p in err["loc"]) or "config"
    if len(where) > 120:
        where = where[:117] + "..."
    return f"{where}: {' '.join(str(err['msg']).split())}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read config file {path} as UTF-8 text ({exc}); give a TOML or YAML file"
        ) from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {path} must end in .toml, .yaml or .yml")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}; fix it there") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}; fix it there") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    check_plain(data, f"config file {path}")
    return data


MAX_VALUE_DEPTH, MAX_VALUE_NODES = 32, 100_000
_SCALARS = (str, int, float, bool, type(None))


def check_plain(value: Any, where: str) -> None:
    """Refuse what YAML / TOML can express but a config cannot hold: dates, binary data, and
    structures nested deeper than MAX_VALUE_DEPTH or larger than MAX_VALUE_NODES (alias bombs)."""
    stack, seen = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if depth > MAX_VALUE_DEPTH or seen > MAX_VALUE_NODES:
            raise ConfigError(f"{where}: the value is nested too deeply or is too large to be a config")
        if isinstance(item, dict):
            bad = [k for k in item if not isinstance(k, _SCALARS)]
            if bad:
                raise ConfigError(f"{where}: mapping key {str(bad[0])[:40]!r} must be a plain string")
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
        elif not isinstance(item, _SCALARS):
            raise ConfigError(
                f"{where}: a {type(item).__name__} value is not allowed; "
                "use numbers, strings, booleans, lists and mappings"
            )


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``a.b.c=value`` in place; the value is parsed as YAML (numbers, bools, lists)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    key, raw = override.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {override!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(f"override {key.strip()!r}: the value is nested too deeply") from None
    if not isinstance(value, (*_SCALARS, list, dict)):
        value = raw  # a YAML date or !!binary scalar: keep the text (a study name 2024-01-01)
    check_plain(value, f"override {key.strip()!r}")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def typed_overrides(values: Mapping[str, object]) -> list[str]:
    """``key=value`` overrides of the values a user typed, None meaning "not typed" (it sets
    nothing): ``{"search.order": 2, "data.name": None} -> ["search.order=2"]``. Apply them after
    ``--set``: defaults < config file < ``--set`` < typed flags."""
    return [f"{key}={json.dumps(value)}" for key, value in values.items() if value is not None]


def build_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """File (optional) -> overrides -> validated :class:`TrainConfig`; errors are one line."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data.update(read_config_file(path))
    for override in overrides:
        apply_override(data, override)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid config: {first_error(exc)}") from None


def config_to_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
