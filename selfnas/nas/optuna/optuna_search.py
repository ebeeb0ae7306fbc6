"""Architecture search by sequential model-based optimisation (CSNAS) with Optuna.

Every trial samples a candidate through ``trial.suggest_categorical`` on the same choices the
space enumerates (DARTS cells, ResNet or MobileNetV2 variants), pretrains it from scratch with
the configured SSL method for ``search.trial_epochs``, and scores it without labels on the
held-out split after every epoch (so a pruner can stop poor trials).
Samplers: TPE (multivariate, constant liar), random, evolutionary (NSGA-II). The study
lives in SQLite in the run directory unless ``search.storage`` names another URL
(:mod:`~selfnas.nas.optuna.study_storage`), and is resumed by running the same search again
with ``--resume``. Every process that joins it follows the budget rule of
:mod:`~selfnas.nas.optuna.study_ledger`: it returns only when the study is complete, with no
trial of a dead worker left RUNNING and no retry left WAITING. The console shows one line per
finished trial; Optuna's log goes to the run's ``study.log``
(:mod:`~selfnas.nas.optuna.study_progress`).
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import optuna
import torch

from selfnas.config import SearchConfig, TrainConfig
from selfnas.errors import ConfigError, SelfnasError, TrainingError
from selfnas.eval.correlation import score_correlations
from selfnas.io import atomic_write_json, read_jsonl, write_jsonl
from selfnas.models.genotype import genotype_from_json, save_genotype
from selfnas.nas.optuna.screening import (
    SCREEN_FILE,
    check_screenable,
    enqueue_screened,
    screen_candidates,
)
from selfnas.nas.optuna.size_cap import backbone_size, capped, over_cap
from selfnas.nas.optuna.study_ledger import BudgetSpent, Ledger, Snapshot, budget_trials, owner, retry_of
from selfnas.nas.optuna.study_progress import LOG_FILE, StudyProgress, score_of, study_log
from selfnas.nas.optuna.study_storage import last_reconnect, open_storage, shown_url, storage_url
from selfnas.nas.optuna.trial_scores import LABEL_FREE, TrialRejected, TrialTrainer
from selfnas.nas.spaces.optuna_spaces import study_space, suggest_cells
from selfnas.render.search_plots import plot_search_study
from selfnas.rundir import RunDir
from selfnas.tracking import log_trials
from selfnas.training.builder import load_config_data

#: the label-free scores set against accuracy in ``score_vs_accuracy.png`` (with the study's own);
#: the correlation table in study.json has every score
PLOTTED = ("ssl_loss", "rankme", "alignment", "uniformity")

#: seconds between two looks at the study while other processes' trials run
POLL_S = 1.0
#: the TPE sampler's fixed options (``search.startup_trials`` is configurable); the simulated
#: studies of ``selfnas/groundtruth/strategy_replay.py`` read them here
TPE_OPTIONS = {"multivariate": True, "constant_liar": True}
OVER_CAP_LIMIT = 200  # candidates over the size cap in a row before a study gives up
_JITTER = random.Random()  # seeded by the OS, not by the run's seed: processes must not wait alike

__all__ = [
    "TrialTrainer", "budget_trials", "open_search_study", "open_storage", "retry_of", "run_search_study",
    "run_worker", "storage_url", "suggest_cells",
]  # fmt: skip


def _sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    if search.strategy == "tpe":
        return optuna.samplers.TPESampler(**TPE_OPTIONS, seed=seed, n_startup_trials=search.startup_trials)
    if search.strategy == "evolution":
        return optuna.samplers.NSGAIISampler(population_size=search.population, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(search: SearchConfig) -> optuna.pruners.BasePruner:
    rungs = {"min_resource": search.min_epochs, "reduction_factor": search.reduction_factor}
    if search.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(**rungs)
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(**rungs)
    return optuna.pruners.NopPruner()


def open_search_study(
    run: RunDir,
    search: SearchConfig,
    seed: int,
    worker: int = 0,
    storage: optuna.storages.BaseStorage | None = None,
) -> optuna.Study:
    """Create or load the study (SQLite in the run by default; journal file; any RDB URL)."""
    storage = storage or open_storage(storage_url(run, search))
    # the sampler's state is not stored: re-seed from the trials already done, deterministically;
    # processes that join a shared study at the same moment differ by their pid as well
    name = search.study_name
    try:
        done = len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    except KeyError:
        done = 0
    sampler_seed = seed + done + 1000 * worker + (100_000 * (os.getpid() % 10_000) if search.storage else 0)
    return optuna.create_study(
        study_name=name, storage=storage, load_if_exists=True, direction="minimize",
        sampler=_sampler(search, sampler_seed), pruner=_pruner(search),
    )  # fmt: skip


def run_search_study(
    config: TrainConfig,
    run: RunDir,
    quiet: bool = False,
    data: Any = None,
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the study in ``run`` until it holds ``search.trials`` results (with the other
    processes that share it), write the best genotype and return the summary. A finished study
    is reported and left as it is (``summary["already_finished"]``); ``on_start`` is called only
    when there is work to do, before the first trial."""
    search = config.search
    assert search is not None
    url = storage_url(run, search)
    progress = StudyProgress(search.study_name, search.trials, search.score_spec, quiet)
    try:
        with study_log(run.path / LOG_FILE):
            study = open_search_study(run, search, config.run.seed, storage=open_storage(url))
            ledger = _ledger(study, search)
            trials = ledger.trials()
            if ledger.snapshot(trials).finished:  # reported, and left alone: not a write to the study
                progress.begin(trials, finished=True)
                summary = _write_results(run, study, search, url, only_if_changed=True)
                return {**summary, "already_finished": True}
            if on_start is not None:
                on_start()
            check_screenable(config)
            _screen(config, run, study, data, progress)
            progress.begin(ledger.trials())
            if search.n_workers > 1:
                ledger.settle()  # a killed run's trials: failed and retried before the workers start
                _run_search_workers(config, run, ledger, progress)
            else:
                objective = _objective(config, run, study_space(search), data, ledger)
                run_worker(study, objective, ledger, progress=progress)
            progress.update(ledger.trials())
    finally:
        progress.close()
    return {**_write_results(run, study, search, url), "already_finished": False}


def _ledger(study: optuna.Study, search: SearchConfig) -> Ledger:
    # the default SQLite file in the run is this process's alone (several workers on it are refused)
    return Ledger(study, search.trials, exclusive=search.storage is None, reconnected=last_reconnect)


def run_worker(
    study: optuna.Study,
    objective: Any,
    ledger: Ledger,
    share: int | None = None,
    progress: StudyProgress | None = None,
) -> int:
    """Run trials of the shared study until it is complete (the rule of
    :mod:`~selfnas.nas.optuna.study_ledger`): queued retries first, new trials while the
    budget has room (at most ``share`` while other trials run, so local workers split the work
    evenly), and wait while other processes' trials run. Returns how many trials it ran."""
    callbacks = [progress] if progress is not None else []
    gc.collect()
    gc.freeze()  # the full collection after each trial then walks the trial's objects, not all of torch
    try:
        return _run_worker(study, objective, ledger, share, callbacks, progress)
    finally:
        gc.unfreeze()


def _run_worker(
    study: optuna.Study,
    objective: Any,
    ledger: Ledger,
    share: int | None,
    callbacks: list[Any],
    progress: StudyProgress | None,
) -> int:
    ran = 0

    def may_start(now: Snapshot) -> bool:
        return bool(now.waiting) or (now.free > 0 and (share is None or ran < share or not now.running))

    while True:
        now = ledger.settle()
        over_share = share is not None and ran >= share
        if may_start(now) and over_share:
            # past its share with nothing running: a local peer that just finished a trial may be
            # about to take the last slots; let the workers with share left go first
            time.sleep(POLL_S + _JITTER.uniform(0.0, POLL_S))
            now = ledger.settle()
        elif may_start(now) and now.free + now.waiting <= now.running:
            # the last slots, and other processes about to want them: stagger, or all but one of
            # those that start at the same moment would start a trial only to cancel it
            time.sleep(_JITTER.uniform(0.0, POLL_S))
            now = ledger.settle()
        if may_start(now):
            study.optimize(
                objective, n_trials=1, gc_after_trial=True, catch=(BudgetSpent,), callbacks=callbacks
            )
            ran += 1
        elif now.running:
            if progress is not None:
                progress.update(ledger.trials())
            time.sleep(POLL_S)
        else:
            return ran


def _objective(config: TrainConfig, run: RunDir, space: Any, data: Any, ledger: Ledger):
    """The trial function: claim the trial, sample a candidate, pretrain it from scratch, return
    its score. A trial past the budget is cancelled before it samples anything."""
    search = config.search
    assert search is not None
    input_shape: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("owner", owner())  # first: a RUNNING trial without an owner looks abandoned
        if not ledger.may_run(trial.number):
            reason = f"the budget of {search.trials} trials was taken before it started"
            trial.set_user_attr("cancelled", reason)
            raise BudgetSpent(reason)
        genotype = space.suggest(trial)
        trial.set_user_attr("genotype", genotype.to_json())
        update = space.model_update(genotype)
        if capped(search):
            if not input_shape:  # C x H x W of the images (a worker process loads the data once)
                images = (data if data is not None else load_config_data(config)).train.images
                input_shape.extend(int(v) for v in images.shape[1:])
            _check_cap(trial, search, update, tuple(input_shape))
        trial_cfg = trial_config(config, update)
        trial_dir = RunDir.prepare(run.path / "trials" / f"{trial.number:04d}", overwrite=True)
        trainer = TrialTrainer(trial_cfg, trial_dir, trial, search.score_spec, quiet=True, data=data)
        try:
            trial.set_user_attr("parameters", sum(p.numel() for p in trainer.model.backbone.parameters()))
            at_init = trainer.init_scores()  # before the first training step
            trial.set_user_attr("scores", _clean(at_init))
            try:
                if trainer.zero_cost:  # a zero-cost proxy: the value at initialisation, no training
                    return trainer.objective(at_init)
                try:
                    trainer.fit()
                finally:  # a pruned or failed trial keeps the scores of its last epoch
                    trial.set_user_attr("scores", _clean({**trainer.epoch_scores, **at_init}))
                scores = {**trainer.final_scores(), **at_init}  # collapse was checked at the last epoch
                trial.set_user_attr("scores", _clean(scores))
                value = trainer.objective(scores)
            except (TrialRejected, TrainingError) as exc:
                return _fail(trial, trainer, str(exc))
            if search.label_eval:
                trial.set_user_attr("accuracy", _clean(trainer.accuracies(search.probe_limit)))
            return value
        finally:  # a long study must not grow: optimize(gc_after_trial=True) frees the trial's model
            del trainer

    return objective


def trial_config(config: TrainConfig, update: dict[str, Any]) -> TrainConfig:
    """The training config of one trial: the candidate's model, ``search.trial_epochs``."""
    search = config.search
    assert search is not None
    return config.model_copy(update={
        "search": None, "model": config.model.model_copy(update=update),
        "optim": config.optim.model_copy(update={"epochs": search.trial_epochs}),
        "run": config.run.model_copy(update={"knn_every": 0, "eval_at_end": False, "trackers": []}),
    })  # fmt: skip


def _screen(
    config: TrainConfig, run: RunDir, study: optuna.Study, data: Any, progress: StudyProgress
) -> None:
    """A fresh study with ``search.screen``: screen candidates, enqueue the best as first trials."""
    search = config.search
    assert search is not None
    if not search.screen or study.get_trials(deepcopy=False):
        return
    data = data if data is not None else load_config_data(config)
    if data.val is None:
        raise ConfigError("screening scores candidates on a held-out split: set data.val_fraction > 0")
    rows = screen_candidates(config, run, study_space(search), data,
                             lambda update: trial_config(config, update), progress.say)  # fmt: skip
    enqueue_screened(study, rows, min(search.screen_keep, search.trials), search.score)


def _check_cap(
    trial: optuna.Trial, search: SearchConfig, update: dict[str, Any], input_shape: tuple[int, ...]
) -> None:
    """Skip a candidate whose backbone is over ``search.max_params`` / ``search.max_flops``
    (measured on a fresh build, nothing trained): the trial ends PRUNED without a reported value,
    which TPE counts among its worst (a FAIL it would ignore, and go on proposing the same big
    networks), with ``cancelled`` and ``over_cap`` recorded: it does not count toward
    ``search.trials`` nor among the pruned trials of the summary, so the study goes on sampling
    until it has its budget of candidates under the cap. After :data:`OVER_CAP_LIMIT` such
    candidates in a row it stops with a one-line error."""
    size = backbone_size(update, input_shape)
    trial.set_user_attr("backbone_size", size)
    over = over_cap(search, size)
    if not over:
        return
    reason = "over the cap: " + ", ".join(over)
    trial.set_user_attr("over_cap", True)
    trial.set_user_attr("cancelled", reason)
    recent = trial.study.get_trials(deepcopy=False)[-OVER_CAP_LIMIT - 1 : -1]
    if len(recent) == OVER_CAP_LIMIT and all(t.user_attrs.get("over_cap") for t in recent):
        raise ConfigError(
            f"the last {OVER_CAP_LIMIT} candidates were all over the cap ({reason}); "
            "raise search.max_params / search.max_flops or narrow the space"
        )
    raise optuna.TrialPruned(reason)


def _fail(trial: optuna.Trial, trainer: TrialTrainer, reason: str) -> float:
    """A candidate that cannot win (collapsed, non-finite score, diverged training) is a result:
    the trial ends FAIL (Optuna's state for a nan objective) with ``fail_reason`` recorded. It is
    not RUNNING, so no retry callback re-enqueues it, and it counts toward ``search.trials``."""
    trial.set_user_attr("fail_reason", reason)
    if trainer.main:
        trainer.run.write_status("failed", message=reason)
    return math.nan


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in values.items()}


def _run_search_workers(config: TrainConfig, run: RunDir, ledger: Ledger, progress: StudyProgress) -> None:
    """``search.n_workers`` processes share the study, each with an even share of the free
    slots; this process shows their trials as they finish."""
    import multiprocessing

    assert config.search is not None
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
    shares = _shares(max(0, ledger.snapshot().free), config.search.n_workers)
    procs = [
        ctx.Process(target=_search_worker, args=(config.model_dump(mode="json"), str(run.path), i, share))
        for i, share in enumerate(shares)
        if share or i == 0  # one worker at least: it runs the queued retries
    ]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        progress.update(ledger.trials())
        procs[0].join(timeout=POLL_S)
    for p in procs:
        p.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed and not ledger.snapshot().finished:
        raise ConfigError(f"{len(failed)} search worker(s) failed (exit codes {failed}); rerun with --resume")
    if failed:  # the others finished the study, retries included
        progress.say(f"warning: {len(failed)} search worker(s) ended early (exit codes {failed}); "
                     "the others finished the study")  # fmt: skip


def _shares(total: int, workers: int) -> list[int]:
    return [total // workers + (i < total % workers) for i in range(workers)]


def _search_worker(config_json: dict[str, Any], run_path: str, index: int, share: int) -> None:
    torch.set_num_threads(1)
    config = TrainConfig.model_validate(config_json)
    run = RunDir(run_path)
    search = config.search
    assert search is not None
    try:
        with study_log(run.path / LOG_FILE):
            study = open_search_study(run, search, config.run.seed, worker=index + 1)
            ledger = _ledger(study, search)
            run_worker(study, _objective(config, run, study_space(search), None, ledger), ledger, share=share)
    except SelfnasError as exc:  # one line, as the CLI says it; the parent reports the exit code
        print(f"error: search worker {index}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One JSON-able row per trial: state, value, parameters, scores and accuracies."""
    rows = []
    for t in study.trials:
        genotype = t.user_attrs.get("genotype")
        rows.append({
            "number": t.number, "state": t.state.name,
            "value": t.value if t.value is None or math.isfinite(t.value) else None,
            "params": t.params, "parameters": t.user_attrs.get("parameters"),
            "intermediate": {str(k): v for k, v in t.intermediate_values.items() if math.isfinite(v)},
            "scores": t.user_attrs.get("scores", {}), "accuracy": t.user_attrs.get("accuracy", {}),
            "retry_of": retry_of(t), "fail_reason": t.user_attrs.get("fail_reason"),
            "cancelled": t.user_attrs.get("cancelled"),
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "architecture": _describe(genotype), "genotype": genotype,
            "backbone_size": t.user_attrs.get("backbone_size"),
            "over_cap": bool(t.user_attrs.get("over_cap")),
            "screen_score": t.user_attrs.get("screen_score"),
        })  # fmt: skip
    return rows


def _describe(genotype: Any) -> str | None:
    if not isinstance(genotype, dict):
        return None
    try:
        g = genotype_from_json(genotype)
    except SelfnasError:
        return None
    return g.describe() if hasattr(g, "describe") else None


def correlations(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Spearman / Kendall of each label-free score with kNN and linear accuracy over the trials
    that were evaluated (the supervised proxy is left out: it is an accuracy itself)."""
    records = [
        {**r["scores"], **{f"{k}_acc": v for k, v in r["accuracy"].items()}}
        for r in rows
        if r["state"] == "COMPLETE" and r["accuracy"]
    ]
    return score_correlations(records, LABEL_FREE, ("knn_acc", "linear_acc"))


def _write_results(
    run: RunDir, study: optuna.Study, search: SearchConfig, url: str, only_if_changed: bool = False
) -> dict[str, Any]:
    """Write trials.jsonl, study.json, the best genotype and the plots; return the summary. With
    ``only_if_changed`` (a finished study resumed) a run that already says the same is left alone."""
    trials = study.get_trials(deepcopy=False)
    rows = trial_rows(study)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type, return-value]
    counts = {
        s: sum(r["state"] == s and not r["over_cap"] for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")
    }
    summary = {
        "space": search.space, "strategy": search.strategy, "score": search.score,
        "supervised_proxy": search.score_spec.supervised,
        "study_name": search.study_name, "storage": shown_url(url), "budget": search.trials,
        "counted": len(budget_trials(trials)), "trials": counts,
        "over_cap": sum(r["over_cap"] for r in rows),
        "cap": {"max_params": search.max_params, "max_flops": search.max_flops},
        "screen": _screen_summary(run),
        "best_trial": best.number if best else None, "best_value": best.value if best else None,
        "best_score": score_of(best, search.score_spec) if best else None,
        "best_scores": best.user_attrs.get("scores") if best else None,
        "best_accuracy": best.user_attrs.get("accuracy") if best else None,
        "correlations": {k: {m: (v if isinstance(v, int) or math.isfinite(v) else None) for m, v in c.items()}
                         for k, c in correlations(rows).items()},
    }  # fmt: skip
    if only_if_changed and _says(run, rows, summary):
        log_trials(run, rows, summary["best_trial"])  # what a killed run had not sent yet (none twice)
        return summary
    write_jsonl(run.path / "trials.jsonl", rows)
    if best is None:
        raise ConfigError("no trial of the study completed; see trials.jsonl")
    save_genotype(run.genotype, genotype_from_json(best.user_attrs["genotype"]))
    atomic_write_json(run.path / "study.json", summary)
    plotted = tuple(dict.fromkeys((search.score, *PLOTTED)))  # one panel a score: a few, not all
    plot_search_study(run, rows, study, tuple(s for s in plotted if s in LABEL_FREE))
    log_trials(run, rows, best.number)  # each trial a nested tracker run (its metric lines are not tracked)
    return summary


def _screen_summary(run: RunDir) -> dict[str, Any] | None:
    """How many candidates were screened at initialisation, and the seconds it took."""
    path = run.path / SCREEN_FILE
    if not path.exists():
        return None
    rows = read_jsonl(path)
    return {"candidates": len(rows), "seconds": round(sum(r.get("seconds") or 0.0 for r in rows), 1)}


def _says(run: RunDir, rows: list[dict[str, Any]], summary: dict[str, Any]) -> bool:
    """Whether the run's files already hold these rows and this summary (and the genotype)."""
    path = run.path / "study.json"
    if not (run.genotype.exists() and path.exists()):
        return False
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
        same_rows = read_jsonl(run.path / "trials.jsonl") == json.loads(json.dumps(rows))
    except (OSError, ValueError, SelfnasError):
        return False
    return same_rows and written == json.loads(json.dumps(summary))
