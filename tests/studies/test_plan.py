"""The study plan: deterministic sampling, the default reference, pinned settings."""

import pytest

from selfnas.errors import ConfigError
from selfnas.studies.plan import DEFAULT_ARCH, StudyPlan, build_study_config, plan_difference, sample_plan


def test_same_seed_same_plan_and_distinct_architectures(fake_config):
    config = fake_config(archs=3)
    a, b = sample_plan(config, 3, 16), sample_plan(config, 3, 16)
    assert a == b
    assert [x.id for x in a.archs] == [DEFAULT_ARCH, "a01", "a02", "a03"]
    genotypes = [str(x.genotype) for x in a.archs[1:]]
    assert len(set(genotypes)) == 3
    assert a.archs[0].model == config.train.model.model_dump(mode="json")  # the configured backbone
    assert StudyPlan.from_json(a.to_json()) == a  # plan.json round-trips


def test_other_seed_other_plan_and_whole_space(fake_config):
    plans = {str([x.genotype for x in sample_plan(fake_config(archs=2), 3, 16).archs])}
    for seed in range(1, 6):
        config = build_study_config(
            fake_config(archs=2).model_dump(mode="json"), {}, ["run.seed=" + str(seed)]
        )
        plans.add(str([x.genotype for x in sample_plan(config, 3, 16).archs]))
    assert len(plans) > 1
    everything = sample_plan(fake_config(archs=4), 3, 16)  # more than half the space: a pick of all
    assert len({str(x.genotype) for x in everything.archs[1:]}) == 4


def test_more_architectures_than_the_space_holds(fake_config):
    with pytest.raises(ConfigError, match="holds 4 architectures"):
        sample_plan(fake_config(archs=5), 3, 16)


def test_source_comes_first_and_units_follow_the_mode(fake_config):
    config = fake_config(scenarios=["syn-coarse"], source="syn-source")
    assert config.scenarios == ["syn-source", "syn-coarse"] and config.targets == ["syn-coarse"]
    plan = sample_plan(config, 3, 16)
    assert [u.key for u in plan.units()] == ["default", "a01", "a02"]
    assert all(u.probes == ("syn-source", "syn-coarse") for u in plan.units())
    per = sample_plan(fake_config(pretrain_on="scenario"), 3, 16)
    assert [u.key for u in per.units()][:2] == ["default.syn-source", "default.syn-coarse"]
    assert plan.train_config(plan.units()[1]).model.backbone_kwargs["width"] in (4, 8)


def test_plan_difference_names_the_setting(fake_config):
    pinned = fake_config()
    assert plan_difference(pinned, fake_config()) is None
    assert "archs: 2 in the plan, 3 asked" in plan_difference(pinned, fake_config(archs=3))
    threads = build_study_config(pinned.model_dump(mode="json"), {}, ["run.threads=2"])
    assert plan_difference(pinned, threads) is None  # how to run, not what to compute


def test_bad_study_options_are_one_line(fake_config):
    with pytest.raises(ConfigError, match="--scenarios"):
        build_study_config(None, {"space": "fake-variants"}, ["data.name=cifar10"])
    with pytest.raises(ConfigError, match="archs"):
        fake_config(archs=0)
    with pytest.raises(ConfigError, match="pretrain_on"):
        fake_config(pretrain_on="everywhere")
