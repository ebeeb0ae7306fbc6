"""What a study computes, pinned once in ``DIR/plan.json``.

A study samples N distinct architectures of each of its macro spaces (families) with the seed,
adds the configured backbone as the reference architecture ``default``, pretrains each with SSL
at one fixed budget (once on the source scenario, or once per scenario) and probes every
(architecture, scenario) pair. The sampled architectures are written to ``plan.json`` before any
work starts; every later run of the study reads them back, so a resumed study can never pick
other architectures.

Several families (``space = "resnet-variants,mobilenet-variants"``) make one population: one
ranking, one correlation matrix. Each family is sampled exactly as a study of that family alone
(same seed, same architectures); ids are the family's short name and a number (``resnet01``,
``mobilenet01``), where a one-family study keeps ``a01``, ``a02``, ...; each records its family.

The scenarios are registered ones and the user's own folders (``user_scenarios``: name ->
``imagefolder:PATH``), which are probed like the others; a plan written before either existed
(one family, registered scenarios) loads and resumes unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from selfnas.config import ModelConfig, TrainConfig, apply_override, first_error
from selfnas.data.scenarios import check_folder, check_scenario_definition, scenario_names
from selfnas.errors import ConfigError, RunDirError
from selfnas.nas.spaces.macro import MACRO_SPACES
from selfnas.nas.spaces.sampling import sample_genotypes

PLAN_FORMAT = "selfnas-study-1"
DEFAULT_ARCH = "default"
# How a unit runs, not what it computes: free to change when a study is resumed.
NOT_PINNED = {("train", "run", "threads"), ("train", "run", "device")}


def study_train_defaults() -> dict[str, Any]:
    """The paper's protocol: SimCLR (its temperature defaults to 0.5) at a fixed budget, no
    per-epoch kNN monitor and no evaluation inside the trainer (the study probes every scenario)."""
    return {
        "method": {"name": "simclr"},
        "optim": {"epochs": 1},
        "run": {"knn_every": 0, "eval_at_end": False},
    }


class StudyConfig(BaseModel):
    """One multi-architecture x multi-scenario study. ``scenarios`` always starts with ``source``."""

    model_config = ConfigDict(extra="forbid")

    space: str = Field(
        "resnet-variants",
        description="macro space(s), comma-separated or a list: resnet-variants | mobilenet-variants",
    )
    scale: Literal["small", "full"] = Field("small", description="small (28-32 px, CPU) or full size")
    space_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="the space's choice lists, e.g. {widths: [8, 16], groups: [1]}; with several "
        "spaces, per space: {resnet-variants: {widths: [8]}, mobilenet-variants: {width_mults: [1.0]}}",
    )
    archs: int = Field(
        8, ge=1, le=10_000, description="architectures sampled from each space (the default is added)"
    )
    scenarios: list[str] = Field(
        default_factory=lambda: _offline_scenarios(), min_length=1, description="scenarios probed"
    )
    user_scenarios: dict[str, str] = Field(
        default_factory=dict,
        description="your own labeled folders as scenarios, probed too: {name: imagefolder:PATH[@SIZE]}",
    )
    source: str = Field("", description="the scenario whose best architecture is tested on the others")
    pretrain_on: Literal["source", "scenario"] = Field(
        "source", description="pretrain once on the source's images, or on each scenario's own"
    )
    limit: int | None = Field(None, ge=1, description="cap on the images of each scenario split")
    data_root: str | None = None
    download: bool = False
    train: TrainConfig = Field(default_factory=lambda: TrainConfig.model_validate(study_train_defaults()))

    @model_validator(mode="before")
    @classmethod
    def _source_first(cls, data: Any) -> Any:
        """The source first, then the scenarios, then the user's folders not listed among them."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        scenarios = data.get("scenarios")
        if scenarios is None:
            scenarios = _offline_scenarios()
        user = data.get("user_scenarios")
        if isinstance(scenarios, list) and isinstance(user, dict):
            scenarios = [*scenarios, *user]
        if isinstance(scenarios, list) and all(isinstance(s, str) for s in scenarios):
            source = data.get("source") or (scenarios[0] if scenarios else "")
            data["source"] = source
            data["scenarios"] = list(dict.fromkeys([source, *scenarios]))
        return data

    @field_validator("space", mode="before")
    @classmethod
    def _one_text(cls, v: Any) -> Any:
        """A name, ``"a, b"`` or ``[a, b]`` -> ``"a,b"``: one spelling per study, so plan.json of a
        one-family study stays as it was and the spellings of one study compare equal."""
        names = v.split(",") if isinstance(v, str) else v
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return v  # the str check reports it
        names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
        if not names:
            raise PydanticCustomError("space", "name at least one macro space")
        return ",".join(names)

    @field_validator("user_scenarios")
    @classmethod
    def _user_folders(cls, v: dict[str, str]) -> dict[str, str]:
        """Each folder's path made absolute; a bad name or spec is one line."""
        try:
            return {name: check_scenario_definition(name, spec) for name, spec in v.items()}
        except ConfigError as exc:
            raise PydanticCustomError("scenario", str(exc)) from None

    @property
    def spaces(self) -> list[str]:
        """The families of the study, in order."""
        return self.space.split(",")

    @property
    def targets(self) -> list[str]:
        return [s for s in self.scenarios if s != self.source]


def _offline_scenarios() -> list[str]:

    return list(scenario_names(offline_only=True))


def build_study_config(
    base: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> StudyConfig:
    """``base`` (a saved plan's config, or nothing) -> ``overrides`` (``optim.lr=0.1`` for the
    training config, ``study.space_kwargs={...}`` for the study's own keys; the CLI's typed flags
    come last among them) -> study ``options`` that are not None (typed too) -> a validated
    :class:`StudyConfig`; errors are one line."""
    data: dict[str, Any] = json.loads(json.dumps(base or {}))
    train = data.setdefault("train", study_train_defaults())
    for override in overrides:
        key = override.strip()
        if key.startswith("data."):
            raise ConfigError(
                f"--set {override}: a study's data are its scenarios; use --scenarios, --source, "
                "--limit and --data-root instead"
            )
        if key.startswith("study."):
            apply_override(data, key.removeprefix("study."))
        else:
            apply_override(train, override)
    data.update({k: v for k, v in (options or {}).items() if v is not None})
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        message = first_error(exc)
        raise ConfigError(f"invalid study config: {message}") from None


@dataclass(frozen=True)
class Arch:
    """One architecture of the study: ``model`` is the training config's model section;
    ``family`` the macro space it was sampled from (``None`` for the reference ``default``)."""

    id: str
    model: dict[str, Any]
    description: str
    genotype: dict[str, Any] | None = None
    family: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "description": self.description,
            "genotype": self.genotype,
            "family": self.family,
        }


@dataclass(frozen=True)
class Unit:
    """One pretraining (``arch`` on the images of scenario ``data``) and the probes that use it."""

    arch: Arch
    data: str
    probes: tuple[str, ...]
    per_scenario: bool

    @property
    def key(self) -> str:
        """The name of its run directory under ``archs/``."""
        return f"{self.arch.id}.{self.data}" if self.per_scenario else self.arch.id


@dataclass(frozen=True)
class StudyPlan:
    """The pinned study: its config, the architectures, and the input shape every scenario is
    loaded at (the source's channels and side, so one network reads every scenario)."""

    config: StudyConfig
    archs: tuple[Arch, ...]
    channels: int
    size: int

    @property
    def scenarios(self) -> list[str]:
        return self.config.scenarios

    def units(self) -> list[Unit]:
        """Every pretraining in plan order: one per architecture, or one per (architecture, scenario)."""
        if self.config.pretrain_on == "source":
            return [Unit(a, self.config.source, tuple(self.scenarios), False) for a in self.archs]
        return [Unit(a, s, (s,), True) for a in self.archs for s in self.scenarios]

    def train_config(self, unit: Unit) -> TrainConfig:
        """The training config of ``unit``: the study's, with the unit's model (``data.name`` only
        labels the run; the images are passed to the trainer)."""
        train = self.config.train
        return train.model_copy(
            update={
                "model": ModelConfig.model_validate(unit.arch.model),
                "data": train.data.model_copy(update={"name": unit.data}),
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "input": {"channels": self.channels, "size": self.size},
            "archs": [a.to_json() for a in self.archs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudyPlan:
        if data.get("format") != PLAN_FORMAT:
            raise RunDirError(f"plan.json has format {data.get('format')!r}, not {PLAN_FORMAT!r}")
        config = StudyConfig.model_validate(data["config"])
        archs = []
        for a in data["archs"]:
            if "family" not in a and a.get("genotype") is not None:  # written before families: one
                a = {**a, "family": config.spaces[0]}
            archs.append(Arch(**a))
        return cls(config, tuple(archs), int(data["input"]["channels"]), int(data["input"]["size"]))


def spaces_for(config: StudyConfig) -> list[Any]:
    """The macro spaces the config names, in order; an unknown name or a bad choice list is a
    one-line error."""
    for name in config.spaces:
        if name not in MACRO_SPACES:
            raise ConfigError(
                f"unknown space {name!r}; choose one or several (comma-separated) of: "
                f"{', '.join(sorted(MACRO_SPACES))}"
            )
    spaces = []
    for name in config.spaces:
        kwargs = space_kwargs(config, name)
        try:
            spaces.append(MACRO_SPACES[name](scale=config.scale, **kwargs))
        except TypeError as exc:
            raise ConfigError(f"study.space_kwargs: {name}: {exc}") from None
    return spaces


def space_kwargs(config: StudyConfig, name: str) -> dict[str, Any]:
    """The choice lists of space ``name``: ``space_kwargs`` itself for a one-family study, else
    its entry under the space's name (keyed by space, since each family has its own choices)."""
    given = config.space_kwargs
    if given and set(given) <= set(config.spaces):
        kwargs = given.get(name, {})
        if not isinstance(kwargs, dict):
            raise ConfigError(f"study.space_kwargs.{name} must be a mapping of choice lists, got {kwargs!r}")
        return kwargs
    if given and len(config.spaces) > 1:
        raise ConfigError(
            "study.space_kwargs: with several spaces, key the choices by space, e.g. "
            "{resnet-variants: {widths: [8]}, mobilenet-variants: {width_mults: [1.0]}}"
        )
    return given


def check_scenarios(config: StudyConfig) -> None:
    """Every scenario is registered or one of the user's folders, and those folders exist with
    at least 2 class subfolders (listed, not decoded: quick, before anything is loaded)."""
    known = [*scenario_names(), *config.user_scenarios]
    for name in config.scenarios:
        if name not in known:
            raise ConfigError(
                f"unknown scenario {name!r}; choose from: {', '.join(known)}, "
                "or define it from a folder: --scenario NAME=imagefolder:PATH"
            )
    for name, spec in config.user_scenarios.items():
        check_folder(name, spec)


def sample_plan(config: StudyConfig, channels: int, size: int) -> StudyPlan:
    """The default architecture, then ``config.archs`` distinct samples of each space, each space
    sampled with the study's seed (as in a study of it alone); ids ``a01``... for one space,
    ``<short name>01``... (``resnet01``, ``mobilenet01``) for several."""
    width = max(2, len(str(config.archs)))
    default = config.train.model
    described = f"{default.backbone}" + (
        f" {json.dumps(default.backbone_kwargs, sort_keys=True)}" if default.backbone_kwargs else ""
    )
    archs = [Arch(DEFAULT_ARCH, default.model_dump(mode="json"), f"{described} (reference)")]
    prefixes = family_prefixes(config.spaces)
    for name, space in zip(config.spaces, spaces_for(config), strict=True):
        for i, genotype in enumerate(sample_genotypes(space, config.archs, config.train.run.seed)):
            model = json.loads(json.dumps(space.model_update(genotype)))
            arch_id = f"{prefixes[name]}{i + 1:0{width}d}"
            archs.append(Arch(arch_id, model, genotype.describe(), genotype.to_json(), name))
    return StudyPlan(config, tuple(archs), channels, size)


def family_prefixes(spaces: list[str]) -> dict[str, str]:
    """The id prefix of each space's architectures: ``a`` alone, else the name less ``-variants``
    (the whole names where two short ones would clash)."""
    if len(spaces) == 1:
        return {spaces[0]: "a"}
    short = {name: name.removesuffix("-variants") for name in spaces}
    clash = len(set(short.values())) < len(short)
    return {name: name if clash else prefix for name, prefix in short.items()}


def read_plan(out: str | Path) -> StudyPlan | None:
    path = Path(out) / "plan.json"
    if not path.exists():
        return None
    try:
        return StudyPlan.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
        raise RunDirError(
            f"{path} is not a valid study plan ({type(exc).__name__}); use --overwrite"
        ) from None


def plan_difference(pinned: StudyConfig, asked: StudyConfig) -> str | None:
    """The first setting in which ``asked`` differs from the pinned config, as ``key: A -> B``."""

    def walk(a: Any, b: Any, path: tuple[str, ...]) -> str | None:
        if path in NOT_PINNED:
            return None
        if isinstance(a, dict) and isinstance(b, dict):
            for key in [*a, *(k for k in b if k not in a)]:
                found = walk(a.get(key), b.get(key), (*path, key))
                if found:
                    return found
            return None
        return None if a == b else f"{'.'.join(path)}: {json.dumps(a)} in the plan, {json.dumps(b)} asked"

    return walk(pinned.model_dump(mode="json"), asked.model_dump(mode="json"), ())
