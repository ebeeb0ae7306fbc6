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


@pytest.mark.parametrize("space", ["resnet-variants", "mobilenet-variants"])
def test_a_variant_study_finds_a_backbone_that_retrains(tmp_path, tiny_overrides, space):
    cfg = build_config(overrides=[*tiny_overrides, *STUDY, f"search.space={space}"])
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
