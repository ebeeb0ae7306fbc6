"""Screen many candidates at initialisation, then train the few.

Before a fresh study's first trial, ``search.screen`` random members of the space (a seeded
random sampler, so a rerun draws the same ones) are built with the trial's own initial weights
and scored by ``search.score`` on the held-out images, before any training step (the score's
``init`` fidelity: ``view_retrieval`` there has Spearman 0.60 with linear-probe accuracy on the
cells table and 0.55 on ResNet at about 1-3% of a training each, ``benchmarks/RESULTS.md``). The
best ``search.screen_keep`` are enqueued as the study's first trials, best first; the sampler
and the pruner take it from there. Candidates over the size caps are drawn again (not scored).

Each screened candidate is one line of ``screen.jsonl`` in the run (written atomically after each
one), so a search killed while screening continues where it stopped; once trials exist the
screening is not repeated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import optuna
import torch

from selfnas.config import TrainConfig
from selfnas.errors import ConfigError
from selfnas.eval.scores import alignment, uniformity
from selfnas.eval.spectral import view_retrieval
from selfnas.io import read_jsonl, write_jsonl
from selfnas.nas.optuna.size_cap import backbone_size, capped, over_cap
from selfnas.nas.optuna.trial_scores import CALIBRATION_IMAGES, SCORE_IMAGES
from selfnas.nas.scoring import DIRECTION, EMBEDDING_SCORES, calibrated_copy, embedding_scores
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer, stream_seed

SCREEN_FILE = "screen.jsonl"
OVER_CAP_DRAWS = 200  # draws over the cap in a row before the screening gives up
#: scores of two views' backbone features, measured without the other scores' passes
TWO_VIEW_SCORES = {"view_retrieval": view_retrieval, "alignment": alignment,
                   "uniformity": lambda a, b: uniformity(a)}  # fmt: skip


def check_screenable(config: TrainConfig) -> None:
    search = config.search
    assert search is not None
    if search.screen and search.score not in EMBEDDING_SCORES:
        raise ConfigError(
            f"search.screen scores candidates by an embedding score; {search.score} is not one "
            "(set search.screen=0 or pick e.g. view_retrieval)"
        )


def score_at_init(config: TrainConfig, data: Any, score: str) -> float:
    """``score`` of the untrained candidate of ``config`` (the weights its trial starts from),
    measured as a trial measures it: BatchNorm recalibrated on training images, seeded views."""
    trainer = Trainer(config, RunDir("unused-screening-run"), quiet=True, data=data)  # writes nothing
    images = data.val.images[:SCORE_IMAGES].to(trainer.device)
    seed = stream_seed(config.run.seed, 9, 0)
    calibration = trainer.images[:CALIBRATION_IMAGES]
    with torch.random.fork_rng(devices=[]):
        if score in TWO_VIEW_SCORES:  # the two views' backbone features alone: a third of the passes
            return _two_view_score(trainer, images, seed, calibration, score)
        scores = embedding_scores(trainer.model, trainer.augment, images, seed, calibration=calibration)
    return float(scores.get(score, math.nan))


@torch.no_grad()
def _two_view_score(
    trainer: Trainer, images: torch.Tensor, seed: int, calibration: torch.Tensor, score: str
) -> float:
    """``score`` of the backbone features of two augmented views, exactly as
    :func:`~selfnas.nas.scoring.embedding_scores` draws and measures them (same views, same
    recalibrated BatchNorm), without the passes the other scores need."""
    model = calibrated_copy(trainer.model, trainer.augment, calibration)
    g = torch.Generator().manual_seed(seed)
    z1, z2 = [], []
    for batch in (b for b in images.split(256) if len(b) > 1):
        v1, v2 = trainer.augment(batch, g)  # N x C x H x W each, the views embedding_scores draws
        z1.append(model.backbone(v1).flatten(1))  # N x D
        z2.append(model.backbone(v2).flatten(1))
    try:
        value = float(TWO_VIEW_SCORES[score](torch.cat(z1), torch.cat(z2)))
    except ValueError:  # non-finite features: the candidate diverged
        return math.nan
    return value


def screen_candidates(
    config: TrainConfig,
    run: RunDir,
    space: Any,
    data: Any,
    trial_config: Callable[[dict[str, Any]], TrainConfig],
    say: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Score ``search.screen`` random candidates at initialisation; the rows of ``screen.jsonl``
    (``index``, ``params``, ``genotype``, ``score``, ``seconds``), continuing a killed screening."""
    search = config.search
    assert search is not None
    check_screenable(config)
    path = run.path / SCREEN_FILE
    rows: list[dict[str, Any]] = read_jsonl(path) if path.exists() else []
    sampler = optuna.samplers.RandomSampler(seed=stream_seed(config.run.seed, 11, 0) % 2**32)
    draws = optuna.create_study(sampler=sampler)  # in memory: the draws, not the study
    shape = tuple(int(v) for v in data.train.images.shape[1:])
    done, over_in_row, start_all = 0, 0, time.perf_counter()
    while done < search.screen:
        trial = draws.ask()
        genotype = space.suggest(trial)
        update = space.model_update(genotype)
        if capped(search) and over_cap(search, backbone_size(update, shape)):
            over_in_row += 1
            if over_in_row >= OVER_CAP_DRAWS:
                raise ConfigError(
                    f"screening: the last {OVER_CAP_DRAWS} candidates were all over the size cap; "
                    "raise search.max_params / search.max_flops or narrow the space"
                )
            continue
        over_in_row = 0
        if done < len(rows):  # screened before a kill: the same draw, not measured again
            done += 1
            continue
        start = time.perf_counter()
        value = score_at_init(trial_config(update), data, search.score)
        rows.append({"index": done, "params": trial.params, "genotype": genotype.to_json(),
                     "score": value if math.isfinite(value) else None,
                     "seconds": round(time.perf_counter() - start, 3)})  # fmt: skip
        write_jsonl(path, rows)
        done += 1
        if say is not None and (done % 10 == 0 or done == search.screen):
            say(f"screened {done}/{search.screen} candidates at initialisation "
                f"({time.perf_counter() - start_all:.0f} s this run)")  # fmt: skip
    return rows


def best_screened(rows: list[dict[str, Any]], keep: int, score: str) -> list[dict[str, Any]]:
    """The ``keep`` best rows by ``score`` (its direction applied), best first; unscored rows last."""
    direction = DIRECTION[score]

    def key(row: dict[str, Any]) -> float:
        value = row.get("score")
        return -direction * value if isinstance(value, int | float) and math.isfinite(value) else math.inf

    return sorted(rows, key=key)[:keep]


def enqueue_screened(study: optuna.Study, rows: list[dict[str, Any]], keep: int, score: str) -> int:
    """Enqueue the best screened candidates as the study's first trials; how many."""
    best = best_screened(rows, keep, score)
    for row in best:
        study.enqueue_trial(row["params"], user_attrs={"screen_index": row["index"],
                                                       "screen_score": row["score"]})  # fmt: skip
    return len(best)
