"""The Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from selfnas import distributed, locks
from selfnas.build import load_pretrained, load_run_config, open_run
from selfnas.config import SearchConfig, TrainConfig, build_config, config_to_yaml
from selfnas.device import resolve_device, resolve_precision
from selfnas.errors import ConfigError, RunDirError
from selfnas.evaluation import evaluate
from selfnas.groundtruth.tables import TableConfig, build_table
from selfnas.io import atomic_write_json, atomic_write_text, read_jsonl
from selfnas.nas.optuna.optuna_search import open_storage, run_search_study, storage_url
from selfnas.nas.spaces.optuna_spaces import STUDY_SPACES, study_space
from selfnas.nas.strategies.darts import CellSearchTrainer, HeadSearchTrainer
from selfnas.provenance import collect_provenance
from selfnas.rundir import RunDir
from selfnas.studies.runner import run_scenario_study
from selfnas.training.builder import load_config_data, with_genotype
from selfnas.training.finetune import check_resume, finetune_config, finetune_trainer
from selfnas.training.supervised import SupervisedTrainer, check_labeled_resumable, supervised_config
from selfnas.training.trainer import Trainer, check_resumable

if TYPE_CHECKING:
    from selfnas.studies.plan import StudyConfig


F = TypeVar("F", bound=Callable[..., Any])


def _one_writer(command: F) -> F:
    """Release, when ``command`` returns or fails, the run locks it took: each run directory it
    opens is held (see :mod:`selfnas.locks`) from the moment it is opened to the end."""

    @functools.wraps(command)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with locks.scope():
            return command(*args, **kwargs)

    return locked  # type: ignore[return-value]


def default_run_dir(prefix: str) -> Path:
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _prepare(
    config: TrainConfig | None,
    out: str | Path | None,
    resume: bool,
    overwrite: bool,
    overrides: list[str] | tuple[str, ...],
    prefix: str,
) -> tuple[RunDir, TrainConfig]:
    if out is None:
        if resume:
            raise ConfigError("--resume needs --out RUN_DIR: the run to continue")
        out = default_run_dir(prefix)
    if not resume and config is None:
        config = build_config(overrides=overrides)  # a bad override fails before any folder is made

    def open_run() -> RunDir:
        run = RunDir.prepare(out, resume=resume, overwrite=overwrite)
        if resume:
            check_resumable(run)
        return run

    # torchrun: rank 0 opens (creates, overwrites) the run directory and every rank uses its path
    distributed.init()
    run = distributed.on_main(open_run)
    if resume:
        config = build_config(base=load_run_config(run).model_dump(mode="json"), overrides=overrides)
    assert config is not None
    return run, config


@contextlib.contextmanager
def _cleanup_on_error(run: RunDir) -> Iterator[None]:
    """On an early error (bad data, bad model), remove what opening the run created: its folder
    and parents such as ``runs/`` that did not exist before, while they are still empty."""
    try:
        yield
    except BaseException:
        if distributed.is_main():
            run.remove_created()
        raise


def _fit(
    trainer_cls: type[Trainer],
    config: TrainConfig | None,
    out: str | Path | None,
    resume: bool,
    overwrite: bool,
    quiet: bool,
    overrides: list[str] | tuple[str, ...],
    argv: list[str] | None,
    prefix: str,
) -> tuple[Trainer, dict[str, Any]]:
    """Open the run directory, build the trainer (removing the directory again if that fails
    before anything was written) and train."""
    run, config = _prepare(config, out, resume, overwrite, overrides, prefix)
    with _cleanup_on_error(run):
        trainer = trainer_cls(config, run, quiet=quiet, argv=argv)
    return trainer, trainer.fit(resume=resume)


def _search_study(
    config: TrainConfig | None,
    out: str | Path | None,
    resume: bool,
    overwrite: bool,
    quiet: bool,
    overrides: list[str] | tuple[str, ...],
    argv: list[str] | None,
    search: SearchConfig,
) -> dict[str, Any]:
    """A TPE / random / evolutionary search (cells or backbone variants) as an Optuna study."""

    if search.space not in STUDY_SPACES:
        raise ConfigError(
            f"--strategy {search.strategy} searches {', '.join(STUDY_SPACES)}; add --space cells"
        )
    url = storage_url(RunDir(out or "."), search)  # refuse SQLite with several workers before any write
    if search.storage is not None and not url.startswith("journal:"):
        open_storage(url)  # a malformed or unreachable storage URL fails here, before anything is written
    run, config = _prepare(config, out, resume, overwrite, overrides, "search")
    with _cleanup_on_error(run):
        precision = resolve_precision(config.run.precision, resolve_device(config.run.device))  # each trial's
        data = load_config_data(config)
    if not resume:
        atomic_write_text(run.config, config_to_yaml(config))
        atomic_write_json(run.provenance, collect_provenance(config.run.seed, argv, precision))
    try:  # a finished study resumed is reported and changes nothing, status.json included
        summary = run_search_study(
            config, run, quiet=quiet, data=data, on_start=lambda: run.write_status("running")
        )
    except KeyboardInterrupt:
        run.write_status("interrupted", message="interrupted; continue with --resume")
        raise
    if not (summary["already_finished"] and run.read_status().get("state") == "finished"):
        run.write_status("finished")
    genotype = json.loads(run.genotype.read_text())
    return {"genotype_file": str(run.genotype), "run_dir": str(run.path), "genotype": genotype, **summary}


@_one_writer
def train(
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Pretrain (and, unless ``config.run.eval_at_end`` is off, evaluate) into a run directory.

    With ``resume``, the run's saved config is used; ``overrides`` may still change it
    (for example a lower ``optim.lr`` after a NaN). Returns the evaluation, or the last
    training metrics when evaluation is off or the data has no labels.
    """
    if config is not None and config.search is not None:
        config = config.model_copy(update={"search": None})  # a training run searches nothing
    trainer, last = _fit(Trainer, config, out, resume, overwrite, quiet, overrides, argv, "train")
    config, run = trainer.config, trainer.run
    data = trainer.data  # a scenario trains on its unlabeled images but is evaluated on its labeled splits
    labeled = data.train.labeled or (data.test is not None and data.test.labeled)
    if not config.run.eval_at_end or not labeled or not trainer.main:
        return {**last, "run_dir": str(run.path)}
    return {**evaluate(run.path, device=config.run.device, quiet=quiet or None), "run_dir": str(run.path)}


@_one_writer
def train_supervised(
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Train the configured backbone (a found cell genotype, a variant, any registered backbone) and a
    linear classifier from scratch with labels: the evaluation phase of DARTS / CSNAS, set by
    ``config.supervised`` (its defaults when unset). Returns eval.json: ``{"supervised": {"val",
    "test", ...}, ...}`` plus ``run_dir``. With ``resume``, the run's saved config is used."""
    if resume and out is not None:
        check_labeled_resumable(RunDir(out), "supervised")
    config = None if config is None else supervised_config(config)
    run, config = _prepare(config, out, resume, overwrite, overrides, "supervised")
    config = supervised_config(config)  # also when built from overrides alone
    with _cleanup_on_error(run):
        trainer = SupervisedTrainer(config, run, quiet=quiet, argv=argv)
    return {**trainer.fit(resume=resume), "run_dir": str(run.path)}


@_one_writer
def finetune(
    run_dir: str | Path,
    data: str | None = None,
    labels: str | int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Fine-tune the pretrained backbone of the run ``run_dir`` end to end with a linear head on a
    seeded, class-balanced share of the labels (``labels``: ``"1%"``, ``"10%"`` (default), ``"100%"``
    or an int per class) of ``data`` (default: the run's data); the validation split selects the
    epoch, the test split is reported. Writes a run directory ``out``; returns eval.json:
    ``{"finetune": {"labels", "val", "test", ...}, ...}`` plus ``run_dir``."""
    source = open_run(run_dir)
    if not source.model.is_file():
        raise RunDirError(
            f"{source.path} has no model.safetensors (its training has not finished); finish it first "
            f"with selfnas train --resume --out {source.path}"
        )
    if resume and out is not None:
        check_labeled_resumable(RunDir(out), "finetune")
    config = None
    if not resume:
        config = finetune_config(load_run_config(source), source.path, data, labels, overrides)
    pretrained = load_pretrained(source.path).state_dict()  # refuses a source without a usable backbone
    run, config = _prepare(config, out, resume, overwrite, overrides, "finetune")
    if resume:
        check_resume(config, source.path, data, labels)
    with _cleanup_on_error(run):
        trainer = finetune_trainer(config, run, pretrained, quiet=quiet, argv=argv)
    return {**trainer.fit(resume=resume), "run_dir": str(run.path)}


@_one_writer
def search(
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Search SSL heads with DARTS (NASiam); writes ``genotype.json`` and alpha plots into the run.

    Returns the last epoch's record (genotype, alphas, parameter-free counts, entropy).
    """

    search_cfg = SearchConfig()
    if config is not None and config.search is not None:
        search_cfg = config.search
    elif resume and out is not None and RunDir(out).config.exists():  # else _prepare says "no run"
        search_cfg = load_run_config(RunDir(out)).search or search_cfg
    if search_cfg.strategy != "darts":
        if search_cfg.space_kwargs:  # a grid the space cannot take is refused before anything is written
            study_space(search_cfg)
        if distributed.launched():
            raise ConfigError(
                f"torchrun runs DARTS searches; run a {search_cfg.strategy} study without torchrun "
                "(--n-workers N runs its trials in parallel)"
            )
        return _search_study(config, out, resume, overwrite, quiet, overrides, argv, search_cfg)
    space = search_cfg.space
    if space not in ("heads", "cells"):
        raise ConfigError(f"the {space} space is searched by a study: add --strategy tpe or random")
    trainer_cls = CellSearchTrainer if space == "cells" else HeadSearchTrainer
    trainer, _ = _fit(trainer_cls, config, out, resume, overwrite, quiet, overrides, argv, "search")
    run = trainer.run
    epochs = [r for r in read_jsonl(run.metrics) if r.get("kind") == "epoch"]
    return {"genotype_file": str(run.genotype), "run_dir": str(run.path), **(epochs[-1] if epochs else {})}


def study(
    config: StudyConfig,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    workers: int = 1,
    quiet: bool = False,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """The multi-architecture x multi-scenario study: sample ``config.archs`` architectures of a
    macro space (plus the default backbone), pretrain each, linear-probe every scenario.

    Runs again with the same config continue where a killed study stopped. Writes ``summary.json``,
    ``study.md`` and ``plots/`` into ``out`` and returns the summary.
    """

    if distributed.launched():
        raise ConfigError("torchrun runs train and search; run the study without it (--workers N: parallel)")
    if out is None:
        if resume:
            raise ConfigError("--resume needs --out DIR: the study to continue")
        out = default_run_dir("study")
    return run_scenario_study(
        config, out, resume=resume, overwrite=overwrite, workers=workers, quiet=quiet, argv=argv
    )


def table(
    config: TableConfig,
    out: str | Path,
    export: str | Path | None = None,
    threads: int | None = None,
    limit: int | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Build (or continue) a ground-truth table of ``config.space`` in ``out``: each architecture
    trained at the table's budget, label-free scores at the fidelities, kNN / linear truth on val and
    test; the finished rows go to ``export`` (JSON Lines) after every row. Several processes may
    build one table together; a killed one resumes where it stopped."""
    report = None if quiet else print
    return build_table(config, out, export=export, threads=threads, limit=limit, report=report, argv=argv)


__all__ = ["evaluate", "finetune", "search", "study", "table", "train", "train_supervised", "with_genotype"]
