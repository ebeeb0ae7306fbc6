"""Run a study: pretrain every architecture, probe every (architecture, scenario) cell.

Work is split into units, one per pretraining; a unit's probes follow it in the same process,
while its model is at hand. With ``workers > 1`` the units are spread over spawned processes
that claim them with file locks (see :mod:`selfnas.studies.cache`). Every unit computes the same
numbers whichever process runs it: training replays from the seed, probes are deterministic, and
a pretraining killed half-way resumes from its checkpoint. Results are bit-identical to one
worker when ``run.threads`` is pinned (float reductions depend on the thread count).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue as queue_lib
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from selfnas.data.augment import TwoViewAugment, augment_preset
from selfnas.data.datasets import channel_stats
from selfnas.data.scenarios import load_scenario
from selfnas.data.types import DatasetSplits, ImageSet
from selfnas.device import Precision, die_with_parent, resolve_device, resolve_precision
from selfnas.errors import RunDirError, SelfnasError, TrainingError
from selfnas.eval.probes import probe_features
from selfnas.io import atomic_write_json
from selfnas.provenance import collect_provenance
from selfnas.studies.cache import StudyDir
from selfnas.studies.outputs import write_outputs
from selfnas.studies.plan import (
    StudyConfig,
    StudyPlan,
    Unit,
    check_scenarios,
    plan_difference,
    read_plan,
    sample_plan,
    spaces_for,
)
from selfnas.training.builder import build_method
from selfnas.training.checkpoint import load_weights
from selfnas.training.progress import TrainProgress
from selfnas.training.trainer import Trainer, make_plan

Report = Callable[[dict[str, Any]], None]


class StudyData:
    """The scenarios one process needs, each loaded once, all at the plan's channels and side."""

    def __init__(self, config: StudyConfig, channels: int | None = None, size: int | None = None) -> None:
        self.config = config
        self.channels, self.size = channels, size
        self._scenarios: dict[str, Any] = {}
        self._pretraining: dict[str, DatasetSplits] = {}

    @classmethod
    def for_plan(cls, plan: StudyPlan) -> StudyData:
        return cls(plan.config, plan.channels, plan.size)

    def scenario(self, name: str) -> Any:
        """The :class:`selfnas.data.scenarios.Scenario` ``name``; the first one loaded (the source,
        for a new plan) fixes the shape of all others when the plan has not yet."""
        if name not in self._scenarios:
            c = self.config
            scenario = load_scenario(
                name, root=c.data_root, seed=c.train.run.seed, download=c.download, limit=c.limit,
                channels=self.channels, size=self.size, defined=c.user_scenarios,
            )  # fmt: skip
            if self.channels is None or self.size is None:
                self.channels, self.size = scenario.train.channels, scenario.train.size
            self._scenarios[name] = scenario
        return self._scenarios[name]

    def pretraining(self, name: str) -> DatasetSplits:
        """The images that pretrain on scenario ``name``: its unlabeled and train images, no labels."""
        if name not in self._pretraining:
            scenario = self.scenario(name)
            images = torch.cat([scenario.unlabeled.images, scenario.train.images])  # N x C x H x W uint8
            mean, std = channel_stats(images)
            self._pretraining[name] = DatasetSplits(name, ImageSet(images), None, None, mean, std)
        return self._pretraining[name]


# -- one unit --------------------------------------------------------------------------------


def pretrain(study: StudyDir, plan: StudyPlan, unit: Unit, data: StudyData) -> None:
    """Train ``unit`` into its run directory, resuming from its checkpoint when one exists."""

    run = study.run(unit)
    resume = run.checkpoint.exists() and run.config.exists()
    if not resume and run.path.exists():
        shutil.rmtree(run.path)  # a start killed before its first checkpoint: nothing to keep
    run.path.mkdir(parents=True, exist_ok=True)
    if unit.arch.genotype is not None:  # what `selfnas draw` / `export` read
        atomic_write_json(run.genotype, unit.arch.genotype)
    trainer = Trainer(plan.train_config(unit), run, quiet=True, data=data.pretraining(unit.data))
    trainer.fit(resume=resume)


def load_backbone(
    study: StudyDir, plan: StudyPlan, unit: Unit, data: StudyData
) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor], torch.device]:
    """The pretrained backbone from ``model.safetensors`` (always from the file, so a fresh and a
    resumed study probe the very same module), its input normalisation and device."""

    config = plan.train_config(unit)
    images = data.pretraining(unit.data)
    model = build_method(config, images.train.channels)
    load_weights(study.run(unit).model, model)
    device = resolve_device(config.run.device)
    views = augment_preset(config.method.spec, images.train.size, images.train.channels)
    return model.backbone.to(device), TwoViewAugment(*views, images.mean, images.std).normalize, device


def probe(
    backbone: torch.nn.Module,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    scenario: Any,
    device: torch.device,
    seed: int,
    precision: Precision = "fp32",
) -> dict[str, Any]:
    """Linear probe (weight decay by 5-fold CV on train) and kNN (k=200) of frozen features
    (computed in ``precision``), both trained on the scenario's train split and reported on its
    test split."""
    train, test = scenario.train, scenario.test
    result = probe_features(
        backbone, normalize, train, {"test": test}, device, knn_k=200, seed=seed, precision=precision
    )
    assert result.linear is not None and result.cv_scores is not None
    return {
        "linear": result.linear["test"],
        "knn": result.knn["test"],
        "weight_decay": result.weight_decay,
        "cv": {str(wd): acc for wd, acc in result.cv_scores.items()},
        "n_train": result.n_train,
        "n_test": len(test),
        "feature_dim": result.feature_dim,
    }


def run_unit(study: StudyDir, plan: StudyPlan, unit: Unit, data: StudyData, report: Report) -> None:
    """Pretrain ``unit`` unless finished, then probe each of its scenarios without a cell yet."""
    if not study.pretrained(unit):
        report({"kind": "started", "unit": unit.key, "data": unit.data})
        pretrain(study, plan, unit, data)
        report({"kind": "pretrained", "unit": unit.key})
    backbone, normalize, device = load_backbone(study, plan, unit, data)
    precision = resolve_precision(plan.config.train.run.precision, device)  # as the unit pretrained
    for name in unit.probes:
        path = study.probe(unit.arch.id, name)
        if path.exists():
            continue
        start = time.perf_counter()
        seed = plan.config.train.run.seed
        result = probe(backbone, normalize, data.scenario(name), device, seed, precision)
        cell = {"arch": unit.arch.id, "scenario": name, "pretrained_on": unit.data, **result}
        atomic_write_json(path, {**cell, "seconds": round(time.perf_counter() - start, 3)})
        report({"kind": "probed", "unit": unit.key, "scenario": name})


def run_units(study: StudyDir, plan: StudyPlan, data: StudyData, order: list[Unit], report: Report) -> None:
    """Do every unfinished unit of ``order`` that no other process holds; then wait for the held
    ones and do those their holder did not finish (it died). A unit that fails with a user error
    is recorded in ``failed/`` and skipped; the others go on."""

    def note_failure(unit: Unit, exc: SelfnasError) -> None:
        report({"kind": "failed", "unit": unit.key, "message": str(exc)})

    study.work_through(
        order,
        lambda unit: run_unit(study, plan, unit, data, report),
        lambda unit: study.done(unit) or study.failure(unit.key).exists(),
        note_failure,
    )


# -- the study -------------------------------------------------------------------------------


def open_scenario_study(
    config: StudyConfig, out: str | Path, resume: bool, overwrite: bool, argv: list[str] | None
) -> tuple[StudyDir, StudyPlan, StudyData | None]:
    """Check the request, then read the pinned plan or sample and write a new one.

    Nothing is written (or deleted) until the names are known and every scenario loads.
    """
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other; pick one")
    study = StudyDir(out)
    spaces_for(config)
    check_scenarios(config)
    plan = None if overwrite else read_plan(study.path)
    if plan is not None:
        difference = plan_difference(plan.config, config)
        if difference:
            raise RunDirError(
                f"{study.path} holds another study ({difference}); rerun it with its own options "
                "(or just --resume), or pass --overwrite to replace it"
            )
        return study, dataclasses.replace(plan, config=config), None  # threads, device as asked now
    if resume:
        raise RunDirError(f"{study.path} holds no study to resume (no plan.json); drop --resume")
    if study.path.exists() and not study.path.is_dir():
        raise RunDirError(f"{study.path} exists and is not a directory; choose another --out")
    if study.path.is_dir() and any(study.path.iterdir()) and not study.plan.exists():
        raise RunDirError(f"{study.path} is a non-empty folder that is not a study; choose another --out")
    data = StudyData(config)
    for name in config.scenarios:  # the source first: it fixes the input shape
        data.scenario(name)
    assert data.channels is not None and data.size is not None
    plan = sample_plan(config, data.channels, data.size)

    for name in {unit.data for unit in plan.units()}:  # a batch larger than the images fails every unit
        make_plan(config.train, len(data.pretraining(name).train))
    if overwrite and study.plan.exists():
        shutil.rmtree(study.path)

    study.path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(study.provenance, collect_provenance(config.train.run.seed, argv))
    atomic_write_json(study.plan, plan.to_json())
    return study, plan, data


def run_scenario_study(
    config: StudyConfig,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    workers: int = 1,
    quiet: bool = False,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Run (or continue) the study in ``out`` and write its outputs; returns the summary."""

    if workers < 1:
        raise RunDirError(f"--workers must be at least 1, got {workers}")
    study, plan, data = open_scenario_study(config, out, resume, overwrite, argv)
    shutil.rmtree(study.failed, ignore_errors=True)  # failures of an earlier invocation are retried
    units = plan.units()
    total = len(units) + sum(len(u.probes) for u in units)
    finished = sum(study.pretrained(u) for u in units) + sum(
        study.probe(u.arch.id, s).exists() for u in units for s in u.probes
    )
    families = " + ".join(plan.config.spaces)
    title = f"study {families}: {len(plan.archs)} archs x {len(plan.scenarios)} scenarios"
    progress = TrainProgress(total, finished, title, quiet)
    done = finished

    def report(event: dict[str, Any]) -> None:
        nonlocal done
        if event["kind"] in ("started", "failed"):
            what = f"pretraining on {event['data']}" if event["kind"] == "started" else event["message"]
            progress.log(f"{event['unit']}: {what}")
            return
        done += 1
        what = event["unit"] + (f" on {event['scenario']}" if "scenario" in event else " pretrained")
        progress.update(done, last=what)

    try:
        if workers == 1 or len(units) == 1:
            run_units(study, plan, data or StudyData.for_plan(plan), units, report)
        else:
            data = None  # each worker loads its own
            _run_unit_workers(study, plan, min(workers, len(units)), report)
    finally:
        progress.close()
    failed = sorted(study.failed.glob("*.txt")) if study.failed.is_dir() else []
    if failed:
        first = failed[0]
        raise TrainingError(
            f"{len(failed)} of {len(units)} pretrainings failed ({first.stem}: {first.read_text().strip()}); "
            f"the finished ones are kept: fix the cause and run the same command again"
        )
    missing = [u.key for u in units if not study.done(u)]
    if missing:
        raise RunDirError(f"{len(missing)} units are not finished ({missing[0]}, ...); run the command again")
    return write_outputs(study, plan)


def _run_unit_workers(study: StudyDir, plan: StudyPlan, workers: int, report: Report) -> None:
    """``workers`` spawned processes share the units, each with its share of the CPU threads."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
    events = ctx.Queue()
    threads = max(1, torch.get_num_threads() // workers)
    procs = [
        ctx.Process(
            target=_unit_worker, args=(str(study.path), plan.to_json(), i, threads, events), daemon=True
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs) or not events.empty():
            try:
                report(events.get(timeout=0.2))
            except queue_lib.Empty:
                continue
    finally:
        for p in procs:
            p.join()
    crashed = [p.exitcode for p in procs if p.exitcode != 0]
    if crashed:
        raise RunDirError(
            f"{len(crashed)} study worker(s) stopped (exit codes {crashed}); see the messages above; "
            "run the same command again to continue"
        )


def _unit_worker(path: str, plan_json: dict[str, Any], index: int, threads: int, events: Any) -> None:
    """One worker: the plan's units, starting at the ``index``-th, so workers start on different units."""
    die_with_parent()
    torch.set_num_threads(threads)
    study = StudyDir(path)
    plan = StudyPlan.from_json(plan_json)
    units = plan.units()
    try:
        run_units(study, plan, StudyData.for_plan(plan), units[index:] + units[:index], events.put)
    except SelfnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
