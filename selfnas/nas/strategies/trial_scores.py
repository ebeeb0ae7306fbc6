"""Scores of one study trial: label-free ones that rank candidates, and labelled ones that only judge.

A trial pretrains one candidate and, after every epoch, reports the score the study
minimises (``search.score``) so a pruner can stop it. When it finishes, it records every
label-free score (SSL loss, RankMe, alignment, uniformity) and, when the data has labels and
``search.label_eval`` is on, the kNN and linear-probe accuracy on the validation split: those
never steer the sampler; they measure how well each label-free score predicts accuracy.
``search.score=knn`` is the exception: a supervised proxy, marked as such everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import torch

from selfnas.config import TrainConfig
from selfnas.errors import ConfigError
from selfnas.eval.probes import probe_features
from selfnas.eval.scores import alignment, rankme, uniformity
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer, stream_seed

LABEL_FREE = ("ssl_loss", "rankme", "alignment", "uniformity")
SUPERVISED_PROXIES = ("knn",)
# the study minimises sign * score: RankMe and kNN accuracy are better when higher
SIGN = {"ssl_loss": 1.0, "rankme": -1.0, "alignment": 1.0, "uniformity": 1.0, "knn": -1.0}
SCORE_IMAGES = 2048  # held-out images a label-free score is measured on


class TrialTrainer(Trainer):
    """Pretrains one candidate and reports its score after every epoch."""

    epoch_lines = False  # the study's progress bar speaks for its trials

    def __init__(
        self, config: TrainConfig, run: RunDir, trial: optuna.Trial, score: str, **kwargs: Any
    ) -> None:
        self.trial, self.score_name = trial, score
        super().__init__(config, run, **kwargs)
        if self.data.val is None:
            raise ConfigError("a scored search needs a held-out split: set data.val_fraction > 0")
        if score in SUPERVISED_PROXIES and not (self.data.val.labeled and self.data.train.labeled):
            raise ConfigError(
                "search.score=knn is a supervised proxy and needs labels; pick a label-free score"
            )

    def objective(self, name: str | None = None, scores: dict[str, float] | None = None) -> float:
        """The value the study minimises for score ``name`` (default: the configured one);
        a label-free score is taken from ``scores`` when given there, else measured."""
        name = name or self.score_name
        if name == "knn":
            value = self._knn()
        elif scores is not None and name in scores:
            value = scores[name]
        else:
            value = self.label_free_scores((name,))[name]
        return SIGN[name] * value

    @torch.no_grad()
    def label_free_scores(self, names: tuple[str, ...] = LABEL_FREE) -> dict[str, float]:
        """Scores of the held-out images: mean SSL loss over two seeded views, RankMe of the clean
        backbone features, alignment / uniformity of the two views' backbone features (nan when
        the representation is not finite)."""
        images = self.data.val.images[:SCORE_IMAGES].to(self.device)
        batches = [b for b in images.split(256) if len(b) > 1]
        g = torch.Generator().manual_seed(stream_seed(self.config.run.seed, 9, 0))
        backbone = self.model.backbone
        self.model.eval()
        out: dict[str, float] = {}
        try:
            if "rankme" in names:
                clean = torch.cat([backbone(self.augment.normalize(b)).flatten(1) for b in batches])
                out["rankme"] = _finite(rankme, clean)
            if {"ssl_loss", "alignment", "uniformity"} & set(names):
                losses, z1, z2 = [], [], []
                for b in batches:
                    v1, v2 = self.augment(b, g)
                    losses.append(float(self.model(v1, v2).loss))
                    if {"alignment", "uniformity"} & set(names):
                        z1.append(backbone(v1).flatten(1))
                        z2.append(backbone(v2).flatten(1))
                out["ssl_loss"] = sum(losses) / len(losses)
                if z1:
                    a, b = torch.cat(z1), torch.cat(z2)
                    out["alignment"] = _finite(alignment, a, b)
                    out["uniformity"] = _finite(uniformity, a)
        finally:
            self.model.train()
        return {k: out[k] for k in names}

    def _knn(self) -> float:
        value = self._knn_monitor()
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
        )
        assert result.linear is not None
        return {"knn": result.knn["val"], "linear": result.linear["val"]}

    def epoch_record(self, epoch: int) -> dict[str, Any]:
        value = self.objective()
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"score is {value}")
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()
        return {"score": value}


def _finite(fn: Any, *args: torch.Tensor) -> float:
    try:
        return fn(*args)
    except ValueError:  # non-finite embeddings: the candidate diverged
        return math.nan
