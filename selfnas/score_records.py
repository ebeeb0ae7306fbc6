"""The score records: one frozen record per score a search can rank candidates by or report.

A record holds the plain facts of a score: its name, which way is better, its family and a
one-line description that cites where it comes from, and it is the score's spec: how a study's
objective is made from a measured value (:meth:`ScoreRecord.objective`: a study minimises) and read
back (:meth:`ScoreRecord.value_from_objective`). The families are derived here once
(:data:`EMBEDDING_SCORES`, :data:`ZERO_COST_SCORES`, :data:`BASELINE_SCORES`,
:data:`SUPERVISED_SCORES`, :data:`AT_INIT_SCORES`). Readers:

* :mod:`selfnas.config` -- the allowed ``search.score`` values (:data:`SEARCH_SCORES`) and
  ``search.score_spec``, the configured score's record;
* :mod:`selfnas.nas.scoring` -- ``DIRECTION``, the sign of every score it measures, and the families;
* :mod:`selfnas.nas.optuna.trial_scores` -- the objective of a study trial;
* :mod:`selfnas.nas.optuna.study_progress` -- the score read back from a trial's objective.

Families: ``embedding`` scores read the backbone's features on held-out images, at any point of
training; ``zero_cost`` scores read the network at initialisation, before any training step;
``baseline`` scores are the network's size, what every proxy must beat; ``supervised`` scores use
labels (a proxy, marked as such everywhere).

A score without a direction (``direction == 0``: neither higher nor lower is better) is measured
and reported, never selectable as ``search.score``. alpha-ReQ is one: the eigenspectrum decay
coefficient is best near 1, on both sides; its distance to 1 (``alpha_req_distance``) is the
selectable form.

Adding a score: one record here, its function in ``selfnas/eval/`` and its measurement in
``selfnas/nas/scoring.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from selfnas.errors import RegistryError

Family = Literal["embedding", "zero_cost", "baseline", "supervised"]


@dataclass(frozen=True)
class ScoreRecord:
    """One score: ``direction`` is +1 when higher is better, -1 when lower is better, 0 when
    neither (reported only, not selectable)."""

    name: str
    direction: int
    family: Family
    description: str

    @property
    def selectable(self) -> bool:
        """Whether a search can rank candidates by it (it has a better side)."""
        return self.direction != 0

    @property
    def at_init(self) -> bool:
        """Whether it is read from the untrained network (zero-cost scores and the size baselines)."""
        return self.family in ("zero_cost", "baseline")

    @property
    def supervised(self) -> bool:
        """Whether measuring it needs labels (a supervised proxy)."""
        return self.family == "supervised"

    def objective(self, value: float) -> float:
        """The value a study minimises for a measured ``value``: ``-direction * value``; a score
        without a better side is one :class:`RegistryError` line."""
        if not self.selectable:
            raise RegistryError(f"score {self.name} has no better side; a search cannot rank by it")
        return -float(self.direction) * value

    def value_from_objective(self, objective: float) -> float:
        """The measured value a study's ``objective`` (:meth:`objective`) was made from."""
        if not self.selectable:
            raise RegistryError(f"score {self.name} has no better side; a search cannot rank by it")
        return -float(self.direction) * objective


_R = ScoreRecord
SCORE_RECORDS: tuple[ScoreRecord, ...] = (
    _R("ssl_loss", -1, "embedding", "the SSL loss on two seeded views of held-out images (CSNAS)"),
    _R("rankme", 1, "embedding", "effective rank of the features (RankMe: Garrido et al., ICML 2023)"),
    _R("rankme_normalized", 1, "embedding", "RankMe / min(N, D) (RankMe: Garrido et al., ICML 2023)"),
    _R("alpha_req", 0, "embedding",
       "eigenspectrum decay, best near 1; reported only (alpha-ReQ: Agrawal et al., NeurIPS 2022)"),
    _R("alpha_req_distance", -1, "embedding", "|alpha - 1| of alpha-ReQ (Agrawal et al., NeurIPS 2022)"),
    _R("lidar", 1, "embedding",
       "effective rank of the LDA matrix of augmented views (LiDAR: Thilak et al., ICLR 2024)"),
    _R("alignment", -1, "embedding",
       "mean squared distance of normalised positive pairs (Wang & Isola, ICML 2020)"),
    _R("uniformity", -1, "embedding", "log mean Gaussian potential of features (Wang & Isola, ICML 2020)"),
    _R("view_retrieval", 1, "embedding", "share of views whose nearest neighbour is their other view (ours)"),
    _R("naswot", 1, "zero_cost",
       "log |det K| of the ReLU activation-code kernel (NASWOT: Mellor et al., ICML 2021)"),
    _R("synflow", 1, "zero_cost",
       "log synaptic flow of the network (SynFlow: Tanaka et al. 2020; Abdelfattah et al., ICLR 2021)"),
    _R("grad_norm", 1, "zero_cost", "norm of the SSL loss's gradient (Abdelfattah et al., ICLR 2021)"),
    _R("params", 1, "baseline", "trainable parameters (the ZiCo baselines: Li et al., ICLR 2023)"),
    _R("flops", 1, "baseline", "FLOPs per image (the ZiCo baselines: Li et al., ICLR 2023)"),
    _R("knn", 1, "supervised", "kNN accuracy on the validation split: a supervised proxy, needs labels"),
)  # fmt: skip

#: every score's name, in record order
SCORE_NAMES: tuple[str, ...] = tuple(r.name for r in SCORE_RECORDS)
#: the names ``search.score`` accepts: the scores with a direction
SEARCH_SCORES: tuple[str, ...] = tuple(r.name for r in SCORE_RECORDS if r.selectable)
_BY_NAME = {r.name: r for r in SCORE_RECORDS}
if len(_BY_NAME) != len(SCORE_RECORDS):  # pragma: no cover - a typo in the table above
    raise RegistryError("duplicate score record")


def score_record(name: str) -> ScoreRecord:
    """The record of score ``name``; a one-line :class:`RegistryError` for an unknown name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise RegistryError(f"unknown score {name!r}; known: {', '.join(SCORE_NAMES)}") from None


def family_names(family: Family) -> tuple[str, ...]:
    """The names of one family's scores, in record order."""
    return tuple(r.name for r in SCORE_RECORDS if r.family == family)


#: the scores of the backbone's features on held-out images, at any point of training
EMBEDDING_SCORES = family_names("embedding")
#: the scores of the network at initialisation
ZERO_COST_SCORES = family_names("zero_cost")
#: the size baselines every proxy must beat
BASELINE_SCORES = family_names("baseline")
#: the scores measured with labels (supervised proxies)
SUPERVISED_SCORES = family_names("supervised")
#: the scores read once from the untrained network: zero-cost and baselines, in record order
AT_INIT_SCORES = tuple(r.name for r in SCORE_RECORDS if r.at_init)
