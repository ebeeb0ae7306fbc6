"""Per-target backbone search: an Optuna study over the ResNet / MobileNetV2 variant spaces."""

import pytest

from selfnas.api import search, train, with_genotype
from selfnas.config import build_config
from selfnas.errors import ConfigError
from selfnas.io import read_jsonl
from selfnas.models.genotype import load_genotype

STUDY = ["search.strategy=random", "search.trials=2", "search.trial_epochs=1", "search.pruner=none",
         "search.score=rankme", "search.probe_limit=300", "optim.epochs=1"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("single_thread")


# the narrowest choices of each family: the test is about the study's plumbing, not the networks
NARROW = {"resnet-variants": "search.space_kwargs={widths: [2], groups: [1]}",
          "mobilenet-variants": "search.space_kwargs={width_mults: [1.0]}"}  # fmt: skip


@pytest.mark.parametrize("space", ["resnet-variants", "mobilenet-variants"])
def test_a_variant_study_finds_a_backbone_that_retrains(tmp_path, tiny_overrides, space):
    cfg = build_config(overrides=[*tiny_overrides, *STUDY, f"search.space={space}", NARROW[space]])
    summary = search(cfg, out=tmp_path / "s", quiet=True)
    genotype = load_genotype(tmp_path / "s" / "genotype.json")
    assert genotype.space == space and summary["space"] == space
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    assert len(rows) == 2 and all(r["architecture"].startswith(space.split("-")[0]) for r in rows)
    retrain = with_genotype(build_config(overrides=[*tiny_overrides, "run.eval_at_end=false"]),
                            tmp_path / "s" / "genotype.json")  # fmt: skip
    assert retrain.model.backbone == genotype.backbone
    train(retrain, out=tmp_path / "r", quiet=True)
    assert (tmp_path / "r" / "model.safetensors").exists()


def test_variant_spaces_are_not_searched_by_darts(tmp_path, tiny_overrides):
    cfg = build_config(overrides=[*tiny_overrides, "search.space=resnet-variants", "search.strategy=darts"])
    with pytest.raises(ConfigError, match="searched by a study"):
        search(cfg, out=tmp_path / "s", quiet=True)
    assert not (tmp_path / "s").exists()


def test_a_flops_cap_keeps_every_trained_candidate_under_it_and_does_not_count_the_others(
    tmp_path, tiny_overrides
):
    from selfnas.eval.zero_cost import flops_per_image
    from selfnas.models.backbones import create_backbone
    from selfnas.models.genotype import genotype_from_json
    from selfnas.nas.spaces.macro import MACRO_SPACES

    space = MACRO_SPACES["resnet-variants"](scale="small")
    default = flops_per_image(create_backbone("resnet_small", in_channels=3), (3, 16, 16))
    cfg = build_config(overrides=[*tiny_overrides, *STUDY, "search.space=resnet-variants", "search.trials=3",
                                  f"search.max_flops={default}"])  # fmt: skip
    summary = search(cfg, out=tmp_path / "s", quiet=True)
    rows = read_jsonl(tmp_path / "s" / "trials.jsonl")
    trained = [r for r in rows if not r["over_cap"]]
    assert all(r["state"] == "PRUNED" and not r["intermediate"] for r in rows if r["over_cap"])  # TPE: worst
    assert len(trained) == 3 and summary["counted"] == 3 and summary["trials"]["PRUNED"] == 0
    assert summary["over_cap"] > 0 and summary["cap"] == {"max_params": None, "max_flops": default}
    for r in trained:  # measured again here, independently of the study's own count
        update = space.model_update(genotype_from_json(r["genotype"]))
        backbone = create_backbone(update["backbone"], in_channels=3, **update["backbone_kwargs"])
        assert flops_per_image(backbone, (3, 16, 16)) <= default


def test_a_cap_nothing_fits_under_is_a_one_line_error(tmp_path, tiny_overrides, monkeypatch):
    from selfnas.nas.optuna import optuna_search

    monkeypatch.setattr(optuna_search, "OVER_CAP_LIMIT", 5)
    cfg = build_config(
        overrides=[*tiny_overrides, *STUDY, "search.space=resnet-variants", "search.max_params=1"]
    )
    with pytest.raises(ConfigError, match="all over the cap") as info:
        search(cfg, out=tmp_path / "s", quiet=True)
    assert "\n" not in str(info.value)


def test_a_variant_study_searches_the_grid_it_is_given(tmp_path, tiny_overrides):
    """search.space_kwargs: a ground-truth table's grid, so a search runs on the table's space."""
    grid = "search.space_kwargs={widths: [4], groups: [2], block_types: [basic], blocks: [1]}"
    cfg = build_config(overrides=[*tiny_overrides, *STUDY, "search.space=resnet-variants", grid])
    search(cfg, out=tmp_path / "s", quiet=True)
    for row in read_jsonl(tmp_path / "s" / "trials.jsonl"):
        genotype = row["genotype"]
        assert (genotype["width_per_group"], genotype["groups"], genotype["block"]) == (4, 2, "basic")
        assert set(genotype["blocks"]) == {1}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["search.space=resnet-variants", "search.space_kwargs={depth: [2]}"], "depth"),
        (["search.space=resnet-variants", "search.space_kwargs={widths: [0]}"], "invalid"),
        (["search.space=cells", "search.space_kwargs={widths: [4]}"], "not of cells"),
    ],
)
def test_a_grid_the_space_cannot_take_is_refused_before_anything_is_written(
    tmp_path, tiny_overrides, extra, fragment
):
    cfg = build_config(overrides=[*tiny_overrides, *STUDY, *extra])
    with pytest.raises(ConfigError, match=fragment):
        search(cfg, out=tmp_path / "s", quiet=True)
    assert not (tmp_path / "s").exists()
