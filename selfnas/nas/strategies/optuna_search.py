"""Architecture search by sequential model-based optimisation (CSNAS) with Optuna.

Every trial samples a candidate through ``trial.suggest_categorical`` on the same choices the
space enumerates (DARTS cells, ResNet or MobileNetV2 variants), pretrains it from scratch with
the configured SSL method for ``search.trial_epochs``, and scores it without labels on the
held-out split after every epoch (so a pruner can stop poor trials).
Samplers: TPE (multivariate, constant liar), random, evolutionary (NSGA-II). The study
lives in SQLite in the run directory unless ``search.storage`` names another URL, and is
resumed by running the same search again with ``--resume``.
"""

from __future__ import annotations

import gc
import math
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch

from selfnas.config import SearchConfig, TrainConfig
from selfnas.errors import ConfigError, SelfnasError, TrainingError
from selfnas.eval.correlation import score_correlations
from selfnas.io import atomic_write_json, write_jsonl
from selfnas.models.genotype import genotype_from_json, save_genotype
from selfnas.nas.spaces.optuna_spaces import study_space, suggest_cells
from selfnas.nas.strategies.trial_scores import (
    LABEL_FREE,
    SUPERVISED_PROXIES,
    TrialRejected,
    TrialTrainer,
)
from selfnas.render.search_plots import plot_search_study
from selfnas.rundir import RunDir

#: the label-free scores set against accuracy in ``score_vs_accuracy.png`` (with the study's own);
#: the correlation table in study.json has every score
PLOTTED = ("ssl_loss", "rankme", "alignment", "uniformity")

__all__ = ["TrialTrainer", "open_search_study", "run_search_study", "storage_url", "suggest_cells"]


def _sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    if search.strategy == "tpe":
        return optuna.samplers.TPESampler(
            multivariate=True, constant_liar=True, seed=seed, n_startup_trials=search.startup_trials
        )
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


def storage_url(run: RunDir, search: SearchConfig) -> str:
    """The study's storage; several workers on SQLite are refused ("database is locked"), and so
    is a journal file whose folder does not exist. Touches nothing on disk: the search calls it
    before anything is written."""
    url = search.storage or f"sqlite:///{(run.path / 'study.db').resolve()}"
    if search.n_workers > 1 and url.startswith("sqlite"):
        raise ConfigError(
            "several workers cannot share SQLite; use search.storage=journal:FILE (one machine) "
            "or a postgresql:// URL (several machines)"
        )
    if url.startswith("journal:"):
        journal = Path(url[len("journal:") :])
        folder = journal.parent
        if not folder.is_dir():
            problem = "does not exist" if not folder.exists() else "is not a directory"
            raise ConfigError(
                f"the folder {folder} of the journal file {journal} {problem}; "
                f"create it first (mkdir -p {folder}) or give journal:PATH in an existing folder"
            )
        if journal.is_dir():
            raise ConfigError(f"the journal file {journal} is a directory; give journal:PATH of a file")
    return url


def open_storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):  # one journal file, appended under a file lock by every local worker
        from optuna.storages.journal import JournalFileBackend

        journal = url[len("journal:") :]
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(journal))
        except OSError as exc:
            raise ConfigError(
                f"cannot open the journal file {journal}: {exc.strerror}; "
                "give journal:PATH of a file you may write"
            ) from None
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; they are what we need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url,
                heartbeat_interval=60,  # >= 60 s so that slow trials are not reaped
                grace_period=120,
                # a killed worker's RUNNING trial is failed and retried, never left behind
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
            )
    except Exception as exc:  # SQLAlchemy raises many types for a bad or unreachable URL
        raise ConfigError(
            f"cannot open study storage {url!r}: {str(exc).splitlines()[0][:200]}; "
            "check the URL and that the database server is up (or drop --storage for SQLite in the run)"
        ) from None
    return storage


def open_search_study(run: RunDir, search: SearchConfig, seed: int, worker: int = 0) -> optuna.Study:
    """Create or load the study (SQLite in the run by default; journal file; any RDB URL)."""
    storage = open_storage(storage_url(run, search))
    # the sampler's state is not stored: re-seed from the trials already done, deterministically
    name = search.study_name
    probe = optuna.load_study(study_name=name, storage=storage) if _exists(storage, name) else None
    done = len(probe.trials) if probe is not None else 0
    return optuna.create_study(
        study_name=name, storage=storage, load_if_exists=True, direction="minimize",
        sampler=_sampler(search, seed + done + 1000 * worker), pruner=_pruner(search),
    )  # fmt: skip


def _exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return any(s.study_name == name for s in storage.get_all_studies())


def run_search_study(
    config: TrainConfig, run: RunDir, quiet: bool = False, data: Any = None
) -> dict[str, Any]:
    """Run the remaining trials of the study in ``run`` and write the best genotype."""
    search = config.search
    assert search is not None
    space = study_space(search)
    optuna.logging.set_verbosity(optuna.logging.WARNING if quiet else optuna.logging.INFO)
    study = open_search_study(run, search, config.run.seed)
    retry_dead_trials(study)
    remaining = max(0, search.trials - len(budget_trials(study.trials)))
    if remaining and search.n_workers > 1:
        _run_search_workers(config, run, remaining)
    elif remaining:
        objective = _objective(config, run, space, data)
        study.optimize(objective, n_trials=remaining, show_progress_bar=not quiet, gc_after_trial=True,
                       callbacks=[StopAtBudget(search.trials)])  # fmt: skip
    return _write_results(run, open_search_study(run, search, config.run.seed), search)


def retry_dead_trials(study: optuna.Study) -> list[int]:
    """Fail the trials that a killed process on this machine left RUNNING (each trial records its
    host and pid) and enqueue each again with its parameters. Heartbeats do this for trials of
    other machines on PostgreSQL, after their grace period; journal files have no heartbeat."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=None)
    dead = [
        t for t in study.get_trials(deepcopy=False)
        if t.state == optuna.trial.TrialState.RUNNING and _orphaned(t.user_attrs.get("owner"))
    ]  # fmt: skip
    for t in dead:
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        retry(study, study._storage.get_trial(t._trial_id))
    return [t.number for t in dead]


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _orphaned(owner: Any) -> bool:
    """Whether the process that ran a trial is gone (only decidable for trials of this machine)."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def retry_of(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the failed trial this one retries (what Optuna's retry callbacks record)."""
    return trial.system_attrs.get("failed_trial")


def budget_trials(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that count toward ``search.trials``: finished ones, except failures that were
    retried (a killed trial and its retry count once). A retry that was killed too is retried
    again; every retry names the original in ``failed_trial`` and the whole chain in
    ``retry_history``, so each link of the chain counts as retried."""
    retried = {retry_of(t) for t in trials} | {
        n for t in trials for n in t.system_attrs.get("retry_history", ())
    }
    return [t for t in trials if t.state.is_finished() and t.number not in retried]


class StopAtBudget:
    """Stops this process once the shared study holds ``trials`` finished trials, counted by every
    process that joined it (others may be on other machines)."""

    def __init__(self, trials: int) -> None:
        self.trials = trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if len(budget_trials(study.get_trials(deepcopy=False))) >= self.trials:
            study.stop()


def _objective(config: TrainConfig, run: RunDir, space: Any, data: Any):
    """The trial function: sample a candidate, pretrain it from scratch, return its score."""
    search = config.search
    assert search is not None

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("owner", _owner())
        genotype = space.suggest(trial)
        trial.set_user_attr("genotype", genotype.to_json())
        trial_cfg = config.model_copy(update={
            "search": None, "model": config.model.model_copy(update=space.model_update(genotype)),
            "optim": config.optim.model_copy(update={"epochs": search.trial_epochs}),
            "run": config.run.model_copy(update={"knn_every": 0, "eval_at_end": False}),
        })  # fmt: skip
        trial_dir = RunDir.prepare(run.path / "trials" / f"{trial.number:04d}", overwrite=True)
        trainer = TrialTrainer(trial_cfg, trial_dir, trial, search.score, quiet=True, data=data)
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
        finally:
            del trainer
            gc.collect()  # a long study must not grow: free every trial's model and data views

    return objective


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


def _run_search_workers(config: TrainConfig, run: RunDir, remaining: int) -> None:
    """``search.n_workers`` processes share the study; each runs a fixed share of the remaining
    trials, so the study ends with exactly ``search.trials`` (no overshoot from racing workers)."""
    import multiprocessing

    assert config.search is not None
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
    procs = [
        ctx.Process(target=_search_worker, args=(config.model_dump(mode="json"), str(run.path), i, share))
        for i, share in enumerate(_shares(remaining, config.search.n_workers))
        if share
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise ConfigError(f"{len(failed)} search worker(s) failed (exit codes {failed}); rerun with --resume")


def _shares(total: int, workers: int) -> list[int]:
    return [total // workers + (i < total % workers) for i in range(workers)]


def _search_worker(config_json: dict[str, Any], run_path: str, index: int, n_trials: int) -> None:
    torch.set_num_threads(1)
    config = TrainConfig.model_validate(config_json)
    run = RunDir(run_path)
    search = config.search
    assert search is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_search_study(run, search, config.run.seed, worker=index + 1)
    objective = _objective(config, run, study_space(search), None)
    study.optimize(objective, n_trials=n_trials, gc_after_trial=True, callbacks=[StopAtBudget(search.trials)])


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
            "duration_s": t.duration.total_seconds() if t.duration else None,
            "architecture": _describe(genotype),
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


def _write_results(run: RunDir, study: optuna.Study, search: SearchConfig) -> dict[str, Any]:
    rows = trial_rows(study)
    write_jsonl(run.path / "trials.jsonl", rows)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError("no trial of the study completed; see trials.jsonl")
    best = study.best_trial
    save_genotype(run.genotype, genotype_from_json(best.user_attrs["genotype"]))
    counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
    summary = {
        "space": search.space, "strategy": search.strategy, "score": search.score,
        "supervised_proxy": search.score in SUPERVISED_PROXIES,
        "best_trial": best.number, "best_value": best.value, "trials": counts,
        "best_scores": best.user_attrs.get("scores"), "best_accuracy": best.user_attrs.get("accuracy"),
        "correlations": {k: {m: (v if isinstance(v, int) or math.isfinite(v) else None) for m, v in c.items()}
                         for k, c in correlations(rows).items()},
    }  # fmt: skip
    atomic_write_json(run.path / "study.json", summary)
    plotted = tuple(dict.fromkeys((search.score, *PLOTTED)))  # one panel a score: a few, not all
    plot_search_study(run, rows, study, tuple(s for s in plotted if s in LABEL_FREE))
    return summary
