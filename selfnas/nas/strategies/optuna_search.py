"""Cell search by sequential model-based optimisation (CSNAS) with Optuna.

Every trial samples a cell pair through ``trial.suggest_categorical`` on the same per-node
choices that :class:`CellSearchSpace` enumerates, pretrains the ``darts_cells`` network from
scratch with the configured SSL method for ``search.trial_epochs``, and scores it without
labels on the held-out unlabeled split after every epoch (so a pruner can stop poor trials).
Samplers: TPE (multivariate, constant liar), random, evolutionary (NSGA-II). The study
lives in SQLite in the run directory unless ``search.storage`` names another URL, and is
resumed by running the same search again with ``--resume``.
"""

from __future__ import annotations

import gc
import itertools
import math
import warnings
from typing import Any

import optuna
import torch

from selfnas.config import SearchConfig, TrainConfig
from selfnas.errors import ConfigError
from selfnas.eval.scores import rankme
from selfnas.io import atomic_write_json, write_jsonl
from selfnas.nas.cell_genotype import CellGenotype
from selfnas.nas.genotype import save_genotype
from selfnas.nas.spaces.cells import CellSearchSpace
from selfnas.rundir import RunDir
from selfnas.train.trainer import Trainer, _stream_seed

STUDY_NAME = "selfnas"


def suggest_cells(trial: optuna.Trial, space: CellSearchSpace) -> CellGenotype:
    """One cell pair, decomposed into per-node input pairs and ops (what TPE models well)."""
    cells = {}
    for cell in ("normal", "reduce"):
        nodes = []
        for k in range(space.nodes):
            pairs = [f"{i},{j}" for i, j in itertools.combinations(range(2 + k), 2)]
            i, j = (int(v) for v in trial.suggest_categorical(f"{cell}.node{k}.inputs", pairs).split(","))
            a = trial.suggest_categorical(f"{cell}.node{k}.op0", list(space.choice_ops))
            b = trial.suggest_categorical(f"{cell}.node{k}.op1", list(space.choice_ops))
            nodes.append(((a, i), (b, j)))
        cells[cell] = nodes
    return space.genotype(cells["normal"], cells["reduce"])


class TrialTrainer(Trainer):
    """Pretrains one candidate and reports its label-free score after every epoch."""

    def __init__(
        self, config: TrainConfig, run: RunDir, trial: optuna.Trial, score: str, **kwargs: Any
    ) -> None:
        self.trial, self.score_name = trial, score
        super().__init__(config, run, **kwargs)
        if self.data.val is None:
            raise ConfigError("a scored search needs a held-out split: set data.val_fraction > 0")

    @torch.no_grad()
    def label_free_score(self) -> float:
        """SSL loss on two seeded views of the held-out images, or RankMe of their features (negated)."""
        images = self.data.val.images[:2048].to(self.device)
        self.model.eval()
        try:
            if self.score_name == "rankme":
                feats = torch.cat([self.model.backbone(self.augment.normalize(b)) for b in images.split(512)])
                return -rankme(feats)  # minimised: a higher effective rank is better
            g = torch.Generator().manual_seed(_stream_seed(self.config.run.seed, 9, 0))
            losses = [float(self.model(*self.augment(b, g)).loss) for b in images.split(256) if len(b) > 1]
            return sum(losses) / len(losses)
        finally:
            self.model.train()

    def epoch_record(self, epoch: int) -> dict[str, Any]:
        score = self.label_free_score()
        if not math.isfinite(score):
            raise optuna.TrialPruned(f"score is {score}")
        self.trial.report(score, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()
        return {"score": score}


def _sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    if search.strategy == "tpe":
        return optuna.samplers.TPESampler(
            multivariate=True, constant_liar=True, seed=seed, n_startup_trials=search.startup_trials
        )
    if search.strategy == "evolution":
        return optuna.samplers.NSGAIISampler(population_size=search.population, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(search: SearchConfig) -> optuna.pruners.BasePruner:
    if search.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=2)
    return optuna.pruners.NopPruner()


def storage_url(run: RunDir, search: SearchConfig) -> str:
    """The study's storage; several workers on SQLite are refused ("database is locked")."""
    url = search.storage or f"sqlite:///{(run.path / 'study.db').resolve()}"
    if search.n_workers > 1 and url.startswith("sqlite"):
        raise ConfigError(
            "several workers cannot share SQLite; use search.storage=journal:FILE (one machine) "
            "or a postgresql:// URL (several machines)"
        )
    return url


def _storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):  # one journal file, appended under a file lock by every local worker
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:") :]))
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
        raise ConfigError(f"cannot open study storage {url!r}: {str(exc).splitlines()[0][:200]}") from None
    return storage


def open_study(run: RunDir, search: SearchConfig, seed: int, worker: int = 0) -> optuna.Study:
    """Create or load the study (SQLite in the run by default; journal file; any RDB URL)."""
    storage = _storage(storage_url(run, search))
    # the sampler's state is not stored: re-seed from the trials already done, deterministically
    probe = optuna.load_study(study_name=STUDY_NAME, storage=storage) if _exists(storage) else None
    done = len(probe.trials) if probe is not None else 0
    return optuna.create_study(
        study_name=STUDY_NAME, storage=storage, load_if_exists=True, direction="minimize",
        sampler=_sampler(search, seed + done + 1000 * worker), pruner=_pruner(search),
    )  # fmt: skip


def _exists(storage: optuna.storages.BaseStorage) -> bool:
    return any(s.study_name == STUDY_NAME for s in storage.get_all_studies())


def run_study(config: TrainConfig, run: RunDir, quiet: bool = False, data: Any = None) -> dict[str, Any]:
    """Run the remaining trials of the study in ``run`` and write the best genotype."""
    search = config.search
    assert search is not None
    space = CellSearchSpace(nodes=search.nodes, C=search.cell_width, layers=search.cell_layers)
    optuna.logging.set_verbosity(optuna.logging.WARNING if quiet else optuna.logging.INFO)
    study = open_study(run, search, config.run.seed)
    finished = [t for t in study.trials if t.state.is_finished()]

    objective = _objective(config, run, space, data)
    remaining = max(0, search.trials - len(finished))
    if remaining and search.n_workers > 1:
        _run_workers(config, run, remaining)
    elif remaining:
        study.optimize(objective, n_trials=remaining, show_progress_bar=not quiet, gc_after_trial=True)
    return _write_results(run, open_study(run, search, config.run.seed))


def _objective(config: TrainConfig, run: RunDir, space: CellSearchSpace, data: Any):
    """The trial function: sample cells, pretrain them from scratch, return the label-free score."""
    search = config.search
    assert search is not None

    def objective(trial: optuna.Trial) -> float:
        genotype = suggest_cells(trial, space)
        trial.set_user_attr("genotype", genotype.to_json())
        model = config.model.model_copy(update={
            "backbone": "darts_cells",
            "backbone_kwargs": {"genotype": genotype.to_json(), "width": search.cell_width,
                                "layers": search.cell_layers},
        })  # fmt: skip
        trial_cfg = config.model_copy(update={
            "search": None, "model": model,
            "optim": config.optim.model_copy(update={"epochs": search.trial_epochs}),
            "run": config.run.model_copy(update={"knn_every": 0, "eval_at_end": False}),
        })  # fmt: skip
        trial_dir = RunDir.prepare(run.path / "trials" / f"{trial.number:04d}", overwrite=True)
        trainer = TrialTrainer(trial_cfg, trial_dir, trial, search.score, quiet=True, data=data)
        try:
            trainer.fit()
            return trainer.label_free_score()
        finally:
            del trainer
            gc.collect()  # a long study must not grow: free every trial's model and data views

    return objective


def _run_workers(config: TrainConfig, run: RunDir, remaining: int) -> None:
    """``search.n_workers`` processes share the study; each runs a fixed share of the remaining
    trials, so the study ends with exactly ``search.trials`` (no overshoot from racing workers)."""
    import multiprocessing

    assert config.search is not None
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
    procs = [
        ctx.Process(target=_worker, args=(config.model_dump(mode="json"), str(run.path), i, share))
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


def _worker(config_json: dict[str, Any], run_path: str, index: int, n_trials: int) -> None:
    torch.set_num_threads(1)
    config = TrainConfig.model_validate(config_json)
    run = RunDir(run_path)
    search = config.search
    assert search is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(run, search, config.run.seed, worker=index + 1)
    space = CellSearchSpace(nodes=search.nodes, C=search.cell_width, layers=search.cell_layers)
    study.optimize(_objective(config, run, space, None), n_trials=n_trials, gc_after_trial=True)


def _write_results(run: RunDir, study: optuna.Study) -> dict[str, Any]:
    rows = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
         "scores": {str(k): v for k, v in t.intermediate_values.items()}}
        for t in study.trials
    ]  # fmt: skip
    write_jsonl(run.path / "trials.jsonl", rows)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError("no trial of the study completed; see trials.jsonl")
    best = study.best_trial
    genotype = CellGenotype.from_json(best.user_attrs["genotype"])
    save_genotype(run.path / "genotype.json", genotype)
    counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
    summary = {"best_trial": best.number, "best_value": best.value, "trials": counts}
    atomic_write_json(run.path / "study.json", summary)
    return summary
