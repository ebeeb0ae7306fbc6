"""Ground-truth tables: many architectures of one space, each trained longer and judged with labels,
with label-free scores read from the same training run at several fidelities.

    DIR/plan.json            the pinned table: config, input shape, architectures, rows
    DIR/runs/<row>/          one run directory per (architecture, seed); scores.json per fidelity
    DIR/rows/<row>.json      one finished row, written atomically (never redone)
    DIR/locks/<row>.lock     held (flock) by the process working on that row
    DIR/failed/<row>.txt     why a row failed in this invocation

Fidelities: ``init`` (before the first step: embedding and zero-cost scores), ``quarter`` (after
a quarter epoch), ``epoch1`` (after one epoch) and ``final`` (after the whole budget). The ground
truth (kNN and linear probe, on val and on test) is measured after the budget; test accuracy is
recorded for reporting only. Several processes may build one table: each row is claimed with a
``flock`` that the kernel frees when its holder dies, and a killed row resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfnas.config import TrainConfig, apply_override, first_error
from selfnas.data.splits import carve_validation, limit_images
from selfnas.data.types import DatasetSplits
from selfnas.errors import ConfigError, RunDirError, SelfnasError
from selfnas.eval.probes import probe_features
from selfnas.groundtruth.table_spaces import table_space
from selfnas.io import atomic_write_json, write_jsonl
from selfnas.models.genotype import genotype_from_json
from selfnas.nas.scoring import embedding_scores, size_scores, zero_cost_scores
from selfnas.nas.spaces.sampling import sample_genotypes
from selfnas.provenance import collect_provenance
from selfnas.rundir import RunDir
from selfnas.training.builder import load_config_data
from selfnas.training.trainer import Trainer, make_plan
from selfnas.workdir import WorkDir

TABLE_FORMAT = "selfnas-table-1"
FIDELITIES = ("init", "quarter", "epoch1", "final")
MIN_BUDGET_EPOCHS = 4  # the ground truth trains at least 4x the longest fidelity (1 epoch)
DEFAULT_ARCH = "default"
CALIBRATION_IMAGES = 1024  # training images that recompute BatchNorm statistics before scoring


def table_train_defaults() -> dict[str, Any]:
    """SimSiam on 10,000 Fashion-MNIST images for 6 epochs, no monitor, no evaluation inside."""
    return {
        "data": {"name": "fashion-mnist", "train_limit": 10_000},
        "optim": {"epochs": 6},
        "run": {"knn_every": 0, "eval_at_end": False, "checkpoint_every": 20},
    }


class TableConfig(BaseModel):
    """One ground-truth table. ``train`` is the budget of every row (the ground truth)."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["heads", "cells", "resnet-variants"] = "heads"
    space_kwargs: dict[str, Any] = Field(default_factory=dict, description="the space's settings")
    archs: int = Field(40, ge=1, le=10_000, description="architectures sampled (the default is added)")
    seeds: int = Field(3, ge=1, le=10, description="training seeds of the seeded architectures")
    seeded_archs: int = Field(10, ge=0, le=10_000, description="architectures (default first) with all seeds")
    sample_seed: int = Field(0, description="seed of the architecture sample and of the data split")
    score_images: int = Field(2048, ge=64, le=100_000, description="held-out images the scores see")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig.model_validate(table_train_defaults()))


def build_table_config(
    options: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TableConfig:
    """``overrides`` (``optim.epochs=8`` for the training config, ``table.space_kwargs={...}`` for
    the table's own keys; the CLI's typed flags come last among them), then the table ``options``
    that are not None (typed too), validated; errors are one line."""
    data: dict[str, Any] = {"train": table_train_defaults()}
    for override in overrides:
        key = override.strip()
        apply_override(data, key.removeprefix("table.")) if key.startswith("table.") else apply_override(
            data["train"], key
        )
    data.update({k: v for k, v in (options or {}).items() if v is not None})
    try:
        config = TableConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid table config: {first_error(exc)}") from None
    if config.train.optim.epochs < MIN_BUDGET_EPOCHS:
        raise ConfigError(
            f"optim.epochs must be at least {MIN_BUDGET_EPOCHS}: the ground truth trains at least 4x "
            "the longest score fidelity (1 epoch)"
        )
    return config


@dataclass(frozen=True)
class Row:
    """One training run of the table: architecture ``arch`` (an id of the plan) with ``seed``."""

    arch: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.arch}.s{self.seed}"


class TableDir(WorkDir):
    """Paths and finished-work checks of one table directory."""

    rows = property(lambda self: self.path / "rows")

    def run(self, row: Row) -> RunDir:
        return RunDir(self.path / "runs" / row.key)

    def row(self, row: Row) -> Path:
        return self.rows / f"{row.key}.json"


def sample_table(config: TableConfig, in_channels: int) -> dict[str, Any]:
    """The pinned plan: the default architecture and ``archs`` distinct samples, then the rows
    (seed 0 of every architecture, then the other seeds of the first ``seeded_archs``)."""
    space = table_space(config.space, config.train, in_channels, config.space_kwargs)
    archs = [{"id": DEFAULT_ARCH, "genotype": None, "description": "the configured architecture (reference)"}]
    width = max(2, len(str(config.archs)))
    for i, genotype in enumerate(sample_genotypes(space, config.archs, config.sample_seed)):
        archs.append(
            {
                "id": f"a{i + 1:0{width}d}",
                "genotype": genotype.to_json(),
                "description": space.describe(genotype),
            }
        )
    rows = [Row(a["id"], 0) for a in archs]
    rows += [Row(a["id"], s) for s in range(1, config.seeds) for a in archs[: config.seeded_archs]]
    return {
        "format": TABLE_FORMAT,
        "config": config.model_dump(mode="json"),
        "in_channels": in_channels,
        "archs": archs,
        "rows": [[r.arch, r.seed] for r in rows],
    }


def row_config(plan: dict[str, Any], row: Row, threads: int | None = None) -> TrainConfig:
    """The training config of ``row``: the table's budget, the row's architecture and seed."""
    config = TableConfig.model_validate(plan["config"])
    train = config.train.model_copy(
        update={"run": config.train.run.model_copy(update={"seed": row.seed, "threads": threads})}
    )
    arch = next(a for a in plan["archs"] if a["id"] == row.arch)
    if arch.get("model"):  # a hand-crafted backbone other than the configured one (no genotype)
        return train.model_copy(update={"model": train.model.model_copy(update=arch["model"])})
    if arch["genotype"] is None:
        return train
    space = table_space(config.space, config.train, plan["in_channels"], config.space_kwargs)
    return space.apply(train, genotype_from_json(arch["genotype"]))


# -- one row ---------------------------------------------------------------------------------


class TableTrainer(Trainer):
    """Trains one row and measures the label-free scores when training reaches each fidelity."""

    epoch_lines = False

    def __init__(self, config: TrainConfig, run: RunDir, score_images: int, **kwargs: Any) -> None:
        super().__init__(config, run, quiet=True, **kwargs)
        if self.data.val is None:
            raise ConfigError("a table needs a validation split for its scores: set data.val_fraction > 0")
        self.score_images = self.data.val.images[:score_images].to(self.device)  # labels unused
        spe = self.plan.steps_per_epoch
        self.fidelity_steps = {"init": 0, "quarter": max(1, spe // 4), "epoch1": spe}
        self.scores_path = run.path / "scores.json"

    def before_weight_step(self, step: int, epoch: int) -> None:
        for fidelity, at in self.fidelity_steps.items():
            if at == step:
                self.measure(fidelity)

    def after_fit(self) -> None:
        self.measure("final")

    def measure(self, fidelity: str) -> None:
        """Measure every score at ``fidelity`` (zero-cost ones at ``init`` only) into scores.json."""
        seed = self.config.run.seed
        costs: dict[str, float] = {}
        scores = embedding_scores(
            self.model,
            self.augment,
            self.score_images,
            seed,
            costs=costs,
            calibration=self.images[:CALIBRATION_IMAGES],
        )
        if fidelity == "init":
            scores |= zero_cost_scores(self.model, self.augment, self.score_images, seed, costs=costs)
        saved = json.loads(self.scores_path.read_text()) if self.scores_path.exists() else {}
        saved[fidelity] = {"scores": scores, "seconds": costs, "step": self.fidelity_steps.get(fidelity)}
        atomic_write_json(self.scores_path, saved)


def build_row(table: TableDir, plan: dict[str, Any], row: Row, data: TableData, threads: int | None) -> None:
    """Train ``row`` (resuming a killed one), then measure its ground truth and write the row."""
    config = row_config(plan, row, threads)
    run = table.run(row)
    resume = run.checkpoint.exists() and run.config.exists()
    run.path.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    score_images = TableConfig.model_validate(plan["config"]).score_images
    trainer = TableTrainer(config, run, score_images, data=data.ssl)
    trainer.fit(resume=resume)
    model = trainer.model.eval()
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    labeled = data.truth
    splits = {name: s for name, s in (("val", labeled.val), ("test", labeled.test)) if s is not None}
    normalize, precision = trainer.augment.normalize, trainer.precision
    probe = probe_features(
        model.backbone, normalize, labeled.train, splits, trainer.device, precision=precision
    )
    truth = {f"knn_{s}": probe.knn[s] for s in splits} | {
        f"linear_{s}": (probe.linear or {})[s] for s in splits
    }
    measured = json.loads(trainer.scores_path.read_text())
    scores: dict[str, dict[str, float]] = {}
    for fidelity in FIDELITIES:
        for name, value in measured[fidelity]["scores"].items():
            if name != "collapsed":
                scores.setdefault(name, {})[fidelity] = value
    arch = next(a for a in plan["archs"] if a["id"] == row.arch)
    out = {
        "arch": row.arch,
        "description": arch["description"],
        "genotype": arch["genotype"],
        "seed": row.seed,
        **size_scores(model, tuple(data.ssl.train.images.shape[1:])),
        "scores": scores,
        "truth": truth,
        "collapsed": bool(measured["final"]["scores"]["collapsed"]),
        "score_seconds": {f: measured[f]["seconds"] for f in FIDELITIES},
        "seconds": {"train": round(train_seconds, 2), "truth": round(time.perf_counter() - start, 2)},
    }
    atomic_write_json(table.row(row), out)


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableData:
    """A table's images, one split for every row (seeded by ``sample_seed``, not the row's seed):
    ``ssl`` is what each row pretrains on (its ``val`` what the label-free scores are measured on),
    ``truth`` the labeled splits its ground truth probes (fitted on ``train``, reported on ``val``
    and ``test``)."""

    ssl: DatasetSplits
    truth: DatasetSplits


def table_data(config: TableConfig) -> TableData:
    """The table's images. On a dataset both views are the same splits (the probe fits on the
    labeled images the rows pretrain on). On a scenario (``data.name=fashion-rotated``, ...) the
    rows pretrain on its pretraining view (unlabeled and train images, no labels); the truth
    carves a seeded ``val_fraction`` of its labeled train split as val, fits the probe on
    ``train_limit`` of the rest and reports its test split."""
    ssl = load_config_data(config.train, seed=config.sample_seed)
    if ssl.train.labels is not None:
        return TableData(ssl, ssl)
    data, seed = config.train.data, config.sample_seed
    probe = load_config_data(config.train, seed=seed, pretraining=False, train_limit=None)
    train, val = carve_validation(probe.train, data.val_fraction, seed)
    if val is None:
        raise ConfigError("a table on a scenario needs data.val_fraction > 0: linear_val is its truth")
    train = limit_images(train, data.train_limit, seed)
    return TableData(ssl, dataclasses.replace(probe, train=train, val=val))


def ensure_rows(
    table: TableDir,
    work: TableDir,
    plan: dict[str, Any],
    arch: str,
    seeds: list[int],
    threads: int | None,
    data_box: dict[str, Any],
) -> list[dict[str, Any]]:
    """The rows of ``arch`` (an id of ``plan``'s architectures) for ``seeds``, training those that
    are missing. A row of ``plan["rows"]`` (the table's own plan) lives in ``table`` and is built
    there, under its row lock, so a running table builder never trains it twice; any other row is
    trained in ``work``. Both are resumable and kill-safe like a table. ``data_box`` caches the
    table's images across calls (loaded at the first row that has to train)."""
    planned = {(a, s) for a, s in plan["rows"]}
    out = []
    for seed in seeds:
        row = Row(arch, seed)
        home = table if (arch, seed) in planned else work
        if not home.row(row).exists():
            with home.lock(row.key):
                if not home.row(row).exists():
                    if "data" not in data_box:
                        data_box["data"] = table_data(TableConfig.model_validate(plan["config"]))
                    print(f"{home.path}/{row.key}: training", file=sys.stderr, flush=True)
                    build_row(home, plan, row, data_box["data"], threads)
        out.append(json.loads(home.row(row).read_text(encoding="utf-8")))
    return out


def open_table(
    config: TableConfig, out: str | Path, argv: list[str] | None
) -> tuple[TableDir, dict[str, Any]]:
    """Read the pinned plan, or sample and write it (under a lock: several processes may start
    together). A plan with other settings is refused: a table's rows must be comparable."""
    table = TableDir(out)
    if table.path.exists() and not table.path.is_dir():
        raise RunDirError(f"{table.path} exists and is not a directory; choose another --out")
    if (
        table.path.is_dir()
        and any(table.path.iterdir())
        and not (table.plan.exists() or table.locks.is_dir())
    ):
        raise RunDirError(f"{table.path} is a non-empty folder that is not a table; choose another --out")
    table.path.mkdir(parents=True, exist_ok=True)
    with table.lock("plan"):
        if table.plan.exists():
            plan = json.loads(table.plan.read_text(encoding="utf-8"))
            if plan.get("format") != TABLE_FORMAT:
                raise RunDirError(f"{table.plan} is not a {TABLE_FORMAT} plan; choose another --out")
            pinned = TableConfig.model_validate(plan["config"]).model_dump(mode="json")
            asked = config.model_dump(mode="json")
            for section in (pinned, asked):
                section["train"]["run"].pop("threads", None)
                section["train"]["run"].pop("device", None)
            if pinned != asked:
                raise RunDirError(
                    f"{table.path} holds a table with other settings; use its own settings or another --out"
                )
            return table, plan
        data = table_data(config)
        make_plan(config.train, len(data.ssl.train))  # a batch larger than the images fails every row
        plan = sample_table(config, data.ssl.train.channels)
        atomic_write_json(table.plan, plan)
        atomic_write_json(table.path / "provenance.json", collect_provenance(config.sample_seed, argv))
        return table, plan


def table_rows(table: TableDir, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished rows, in plan order."""
    rows = [Row(a, s) for a, s in plan["rows"]]
    return [json.loads(table.row(r).read_text(encoding="utf-8")) for r in rows if table.row(r).exists()]


def export_table(table: TableDir, plan: dict[str, Any], path: str | Path) -> int:
    """Write the finished rows as JSON Lines to ``path`` (atomically); returns how many."""
    rows = table_rows(table, plan)
    write_jsonl(Path(path), rows)
    return len(rows)


def build_table(
    config: TableConfig,
    out: str | Path,
    export: str | Path | None = None,
    threads: int | None = None,
    limit: int | None = None,
    report: Any = None,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Build (or continue) the table in ``out``: every unfinished row that no other process holds,
    then the ones whose holder died. After each row the finished rows go to ``export``
    (default ``out/table.jsonl``). ``limit`` stops after that many new rows (a time budget)."""
    table, plan = open_table(config, out, argv)
    export = Path(export) if export is not None else table.path / "table.jsonl"
    data = table_data(TableConfig.model_validate(plan["config"]))
    rows = [Row(a, s) for a, s in plan["rows"]]
    built = 0

    def build(row: Row) -> None:
        nonlocal built
        if report:
            report(f"{row.key}: training")
        build_row(table, plan, row, data, threads)
        built += 1
        written = export_table(table, plan, export)
        if report:
            report(f"{row.key}: done ({written} of {len(rows)} rows in {export})")

    def note_failure(row: Row, exc: SelfnasError) -> None:
        if report:
            report(f"{row.key}: failed: {exc}")

    def done(row: Row) -> bool:  # finished, or past the ``limit`` of new rows
        return table.row(row).exists() or (limit is not None and built >= limit)

    table.work_through(rows, build, done, note_failure)
    finished = export_table(table, plan, export)
    failed = sorted(p.stem for p in table.failed.glob("*.txt")) if table.failed.is_dir() else []
    return {"rows": len(rows), "finished": finished, "built": built, "failed": failed, "export": str(export)}
