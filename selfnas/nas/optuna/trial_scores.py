"""Scores of one study trial: label-free ones that rank candidates, and labelled ones that only judge.

A trial measures its candidate's zero-cost and baseline scores at initialisation, before any
training step (NASWOT, SynFlow, grad-norm, parameters, FLOPs), then pretrains it and reports the
score the study ranks by (``search.score``) after every epoch so a pruner can stop it. When it
finishes it records every embedding score of :func:`selfnas.nas.scoring.embedding_scores` and,
when the data has labels and ``search.label_eval`` is on, the kNN and linear-probe accuracy on
the validation split: those never steer the sampler; they measure how well each label-free
score predicts accuracy. ``search.score=knn`` is the exception: a supervised proxy, marked as
such everywhere. When ``search.score`` is a zero-cost or baseline score, the trial never trains:
its objective is the value at initialisation (that is the point of a zero-cost proxy).

Collapse never wins: a candidate whose final embedding is collapsed, or whose score is not
finite, is a failed trial (:class:`TrialRejected`), whatever its score; the study records why.
The configured score arrives as its record (``search.score_spec``): which way is better and the
objective the study minimises (:meth:`~selfnas.score_records.ScoreRecord.objective`) come from it.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import torch

from selfnas.config import TrainConfig
from selfnas.errors import ConfigError
from selfnas.eval.probes import probe_features
from selfnas.nas.scoring import ZERO_COST_BATCH, embedding_scores, size_scores, zero_cost_scores
from selfnas.rundir import RunDir
from selfnas.score_records import AT_INIT_SCORES, EMBEDDING_SCORES, SUPERVISED_SCORES, ScoreRecord
from selfnas.training.trainer import Trainer, stream_seed

#: the scores measured once, on the untrained candidate
AT_INIT = AT_INIT_SCORES
#: every label-free score a finished trial records (the embedding ones after training)
LABEL_FREE = EMBEDDING_SCORES + AT_INIT
SUPERVISED_PROXIES = SUPERVISED_SCORES
SCORE_IMAGES = 2048  # held-out images a label-free score is measured on
#: a flagged collapse fails the trial when the features' spread (std of the normalised features
#: x sqrt(D)) is under this: every input maps to one point. The flag alone (under COLLAPSE_RATIO,
#: 0.2, of the backbone's non-centred features) also marks barely trained candidates that still
#: rank (seen: 0.013-0.45 after one epoch of the tiny test cells); those are recorded, not failed.
POINT_COLLAPSE = 1e-3
CALIBRATION_IMAGES = 1024  # training images that recompute BatchNorm statistics before scoring


def _unseen(phase: str, done: int, total: int) -> None:
    """The progress of a phase inside a trial: not shown."""


class TrialRejected(Exception):
    """The candidate is a result, and a failed one: its embedding collapsed or its score is not
    finite. The study marks the trial FAIL with this reason (never PRUNED, never retried)."""


class TrialTrainer(Trainer):
    """Pretrains one candidate and reports its score after every epoch."""

    epoch_lines = False  # the study's progress bar speaks for its trials
    plot_curves = False  # a trial's curves are seen by nobody, and plotting cost more than training

    def __init__(
        self, config: TrainConfig, run: RunDir, trial: optuna.Trial, score: ScoreRecord, **kwargs: Any
    ) -> None:
        self.trial, self.score = trial, score
        if not score.selectable:
            raise ConfigError(f"search.score={score.name} has no better side; pick one of the search scores")
        self._epoch_scores: tuple[int, dict[str, float]] | None = None  # (epoch, its embedding scores)
        super().__init__(config, run, **kwargs)
        if self.data.val is None:
            raise ConfigError("a scored search needs a held-out split: set data.val_fraction > 0")
        if score.supervised and not (self.data.val.labeled and self.data.train.labeled):
            raise ConfigError(
                "search.score=knn is a supervised proxy and needs labels; pick a label-free score"
            )

    @property
    def zero_cost(self) -> bool:
        """Whether the configured score is read at initialisation (the trial then never trains)."""
        return self.score.at_init

    def objective(self, scores: dict[str, float]) -> float:
        """The value the study minimises for the configured score, taken from ``scores`` (a
        supervised proxy, the kNN accuracy, is measured here); raises :class:`TrialRejected` when
        it is not finite."""
        value = self._knn() if self.score.supervised else scores.get(self.score.name, math.nan)
        if not math.isfinite(value):
            raise TrialRejected(f"non-finite score: {self.score.name} is {value}")
        return self.score.objective(value)

    def _score_images(self) -> torch.Tensor:
        assert self.data.val is not None
        return self.data.val.images[:SCORE_IMAGES].to(self.device)  # N x C x H x W uint8

    def init_scores(self) -> dict[str, float]:
        """Zero-cost and baseline scores of the candidate as it is now (call before training);
        measured on copies: the model, its statistics and the global RNG are left as they were."""
        images = self._score_images()
        seed = stream_seed(self.config.run.seed, 9, 1)
        with torch.random.fork_rng(devices=[]):
            scores = zero_cost_scores(self.model, self.augment, images[:ZERO_COST_BATCH], seed)
            scores.update(size_scores(self.model, tuple(images.shape[1:])))
        return scores

    @property
    def epoch_scores(self) -> dict[str, float]:
        """The embedding scores measured at the end of the last epoch so far (``{}`` before)."""
        return dict(self._epoch_scores[1]) if self._epoch_scores is not None else {}

    def final_scores(self) -> dict[str, float]:
        """Every embedding score of the trained candidate (the last epoch's, when it measured them),
        plus ``normalized_std`` and ``collapsed``."""
        if self._epoch_scores is not None and self._epoch_scores[0] == self.last_epoch:
            return dict(self._epoch_scores[1])
        return self.embedding_scores()

    def embedding_scores(self) -> dict[str, float]:
        """:func:`selfnas.nas.scoring.embedding_scores` of the held-out images, views from the
        trial's seed (the same views at every epoch)."""
        seed = stream_seed(self.config.run.seed, 9, 0)
        calibration = self.images[:CALIBRATION_IMAGES]
        return embedding_scores(self.model, self.augment, self._score_images(), seed, calibration=calibration)

    def rejection(self, scores: dict[str, float]) -> str | None:
        """Why a trained candidate with these final embedding scores cannot win, or None: its
        features are collapsed (``collapsed`` of :func:`~selfnas.nas.scoring.embedding_scores`)
        to one point (their spread under :data:`POINT_COLLAPSE` of a healthy one), or not finite."""
        if not scores.get("collapsed"):
            return None
        std = scores.get("normalized_std", math.nan)
        ratio = std * math.sqrt(self.model.backbone.out_dim)
        if not math.isfinite(ratio):
            return "collapsed: the features are not finite"
        if ratio < POINT_COLLAPSE:
            return (
                f"collapsed: every input maps to one point (std of the normalised features is "
                f"{ratio:.2g} x the healthy 1/sqrt(D))"
            )
        return None

    def _knn(self) -> float:
        value = self._knn_monitor(_unseen)  # a trial shows no progress of its own (the study does)
        return math.nan if value is None else value

    def accuracies(self, limit: int) -> dict[str, float]:
        """kNN and linear-probe accuracy on the validation split (``limit`` train images as the
        bank / probe training set); ``{}`` without labels."""
        train, val = self.data.train, self.data.val
        if val is None or not (train.labeled and val.labeled):
            return {}
        result = probe_features(
            self.model.backbone,
            self.augment.normalize,
            train,
            {"val": val},
            self.device,
            train_limit=limit,
            knn_k=200,
            seed=self.config.run.seed,
            nan_if_nonfinite=True,  # a diverged candidate scores (nan, nan)
            precision=self.precision,
        )
        assert result.linear is not None
        return {"knn": result.knn["val"], "linear": result.linear["val"]}

    @property
    def last_epoch(self) -> int:
        return math.ceil(self.plan.total_steps / self.plan.steps_per_epoch)

    def epoch_record(self, epoch: int) -> dict[str, Any]:
        scores: dict[str, float] = {}
        if not self.score.supervised or epoch == self.last_epoch:
            scores = self.embedding_scores()
            self._epoch_scores = (epoch, scores)
        if epoch == self.last_epoch and (reason := self.rejection(scores)):
            raise TrialRejected(reason)  # before the pruner: a collapsed candidate fails, never prunes
        value = self.objective(scores)  # a non-finite score fails the trial: TrialRejected
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()
        return {"score": value}
