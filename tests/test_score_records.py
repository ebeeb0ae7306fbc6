"""The score records: one name list for the config, the scoring code and the search."""

import re

import pytest
import torch

from selfnas.config import build_config
from selfnas.data.augment import TwoViewAugment, augment_preset
from selfnas.errors import ConfigError, RegistryError
from selfnas.nas import scoring
from selfnas.nas.optuna.trial_scores import AT_INIT, LABEL_FREE, SUPERVISED_PROXIES
from selfnas.score_records import SCORE_NAMES, SCORE_RECORDS, SEARCH_SCORES, family_names, score_record
from selfnas.training.builder import build_method

pytestmark = pytest.mark.usefixtures("single_thread")


def test_each_record_is_one_plain_fact():
    assert len(set(SCORE_NAMES)) == len(SCORE_NAMES) == len(SCORE_RECORDS)
    for r in SCORE_RECORDS:
        assert r.direction in (-1, 0, 1) and r.family in ("embedding", "zero_cost", "baseline", "supervised")
        assert r.description and "\n" not in r.description
        assert re.search(r"\b(19|20)\d\d\b|\(ours\)|CSNAS|supervised proxy", r.description), r.name
        assert score_record(r.name) is r
        assert r.selectable == (r.name in SEARCH_SCORES) == (r.direction != 0)
    assert [r.name for r in SCORE_RECORDS if not r.selectable] == ["alpha_req"]  # best near 1: no side
    with pytest.raises(RegistryError, match="unknown score 'bogus'"):
        score_record("bogus")


@torch.no_grad()
def _tiny_model_and_views(tiny_overrides):
    cfg = build_config(overrides=tiny_overrides)
    torch.manual_seed(0)
    model = build_method(cfg, 3)
    augment = TwoViewAugment(*augment_preset(cfg.method.name, 16, 3), (0.5,) * 3, (0.25,) * 3)
    images = torch.randint(
        0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    return model, augment, images


def test_every_record_is_measured_by_the_scoring_code_and_nothing_else_is(tiny_overrides):
    model, augment, images = _tiny_model_and_views(tiny_overrides)
    embedding = scoring.embedding_scores(model, augment, images, seed=0)
    zero_cost = scoring.zero_cost_scores(model, augment, images, seed=0)
    size = scoring.size_scores(model, (3, 16, 16))
    assert set(embedding) - {"normalized_std", "collapsed"} == set(family_names("embedding"))
    assert set(zero_cost) == set(family_names("zero_cost"))
    assert set(size) == set(family_names("baseline"))
    assert set(family_names("supervised")) == set(SUPERVISED_PROXIES) == {"knn"}  # measured with labels
    # the name lists of the scoring code and of a search trial are the records' families
    assert scoring.EMBEDDING_SCORES == family_names("embedding")
    assert scoring.ZERO_COST_SCORES == family_names("zero_cost")
    assert scoring.BASELINES == family_names("baseline")
    assert set(LABEL_FREE) | set(SUPERVISED_PROXIES) == set(SCORE_NAMES)
    assert set(AT_INIT) == set(family_names("zero_cost")) | set(family_names("baseline"))
    assert scoring.DIRECTION == {r.name: float(r.direction) for r in SCORE_RECORDS}


def test_the_config_takes_every_selectable_score_and_refuses_the_rest(tiny_overrides):
    for name in SEARCH_SCORES:
        assert build_config(overrides=[*tiny_overrides, f"search.score={name}"]).search.score == name
    assert build_config(overrides=[*tiny_overrides, "search.strategy=tpe"]).search.score == "view_retrieval"
    for bad in ("alpha_req", "bogus", "RankMe"):
        with pytest.raises(ConfigError, match="search.score") as err:
            build_config(overrides=[*tiny_overrides, f"search.score={bad}"])
        assert "\n" not in str(err.value)


# -- the score spec: a study's objective made and read back -----------------------------------


@pytest.mark.parametrize("name", SEARCH_SCORES)
def test_a_study_minimising_the_objective_picks_the_better_measured_value(name):
    """Minimising :meth:`objective` over measured values picks the highest of a higher-is-better
    score and the lowest of a lower-is-better one, and :meth:`value_from_objective` gives back
    the measured value (as the study's progress lines print it)."""
    spec = score_record(name)
    measured = [0.25, -1.5, 3.0]
    best = min(measured, key=spec.objective)
    assert best == (max(measured) if spec.direction > 0 else min(measured))
    for value in measured:
        assert spec.value_from_objective(spec.objective(value)) == value


def test_a_score_without_a_better_side_makes_no_objective():
    spec = score_record("alpha_req")
    for read in (spec.objective, spec.value_from_objective):
        with pytest.raises(RegistryError, match="alpha_req has no better side") as info:
            read(1.0)
        assert "\n" not in str(info.value)


def test_the_configured_score_arrives_as_its_record():
    """``search.score`` is resolved once, where the config is read: ``search.score_spec``."""
    config = build_config(overrides=["search.score=ssl_loss"])
    assert config.search.score_spec is score_record("ssl_loss")
    assert config.search.score_spec.objective(0.5) == 0.5  # lower is better: minimised as measured
    with pytest.raises(ConfigError):
        build_config(overrides=["search.score=alpha_req"])  # no better side: not selectable


def test_families_partition_the_scores_and_at_init_is_zero_cost_and_baselines():
    from selfnas import score_records as sr

    families = (sr.EMBEDDING_SCORES, sr.ZERO_COST_SCORES, sr.BASELINE_SCORES, sr.SUPERVISED_SCORES)
    assert sorted(n for f in families for n in f) == sorted(SCORE_NAMES)
    assert sr.AT_INIT_SCORES == sr.ZERO_COST_SCORES + sr.BASELINE_SCORES
    assert all(score_record(n).at_init for n in sr.AT_INIT_SCORES)
    assert not any(score_record(n).at_init for n in sr.EMBEDDING_SCORES + sr.SUPERVISED_SCORES)
    assert [n for n in SCORE_NAMES if score_record(n).supervised] == list(sr.SUPERVISED_SCORES) == ["knn"]
