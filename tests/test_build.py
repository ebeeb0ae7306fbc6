import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from selfnas.build import build_model, load_pretrained
from selfnas.config import build_config
from selfnas.errors import ConfigError, GenotypeError, RunDirError
from selfnas.models.genotype import HeadGenotype, load_genotype, save_genotype
from selfnas.models.heads import HeadLayer, HeadSpec
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.rundir import RunDir
from selfnas.ssl.base import SSLMethod
from selfnas.training.checkpoint import save_weights
from selfnas.training.trainer import Trainer
from tests.conftest import REPO, TINY

FAST = [*TINY, "optim.epochs=1", "run.knn_every=0"]
SEARCH = ["search.projector_layers=2", "search.predictor_layers=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("build") / "run"
    Trainer(build_config(overrides=FAST), RunDir.prepare(path), quiet=True).fit()
    return path


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("build") / "search"
    HeadSearchTrainer(build_config(overrides=[*FAST, *SEARCH]), RunDir.prepare(path), quiet=True).fit()
    return path


def _images(n=4, channels=3):
    return torch.randn(n, channels, 16, 16, generator=torch.Generator().manual_seed(0))


def test_parts_have_the_documented_shapes(run):
    backbone = build_model(run)
    assert backbone.out_dim == 16 and build_model(run)(_images()).shape == (4, 16)
    encoder = build_model(run, "encoder").eval()
    assert isinstance(encoder, nn.Sequential) and encoder(_images()).shape == (4, 16)  # proj_out 16
    heads = build_model(run, "heads")
    assert set(heads) == {"projector", "predictor"}
    assert heads["predictor"].eval()(torch.randn(4, 16)).shape == (4, 16)
    assert isinstance(build_model(run, "full"), SSLMethod)
    assert build_model(run, in_channels=1)(_images(channels=1)).shape == (4, 16)


def test_load_pretrained_holds_the_trained_weights(run):
    saved = load_file(str(run / "model.safetensors"))
    backbone = load_pretrained(run)
    assert not backbone.training
    state = backbone.state_dict()
    assert state and all(torch.equal(v, saved[f"backbone.{k}"]) for k, v in state.items())
    encoder = load_pretrained(run, "encoder")
    names = {"0": "backbone", "1": "projector"}  # Sequential(backbone, projector)
    assert all(torch.equal(v, saved[names[k[0]] + k[1:]]) for k, v in encoder.state_dict().items())
    full = load_pretrained(run, "full")
    assert all(torch.equal(v, saved[k]) for k, v in full.state_dict().items())
    with torch.no_grad():
        assert torch.equal(full.backbone(_images()), backbone(_images()))


def test_in_channels_come_from_the_weights(run, tmp_path):
    (tmp_path / "gray").mkdir()
    shutil.copy(run / "config.yaml", tmp_path / "gray" / "config.yaml")
    save_weights(tmp_path / "gray" / "model.safetensors", build_model(run, "full", in_channels=1))
    assert load_pretrained(tmp_path / "gray")(_images(channels=1)).shape == (4, 16)
    assert build_model(tmp_path / "gray").stem[0].in_channels == 1


def test_heads_from_a_genotype_file(tmp_path):
    projector = HeadSpec((HeadLayer("linear_bn_relu", 32), HeadLayer("identity", 32), HeadLayer("linear", 8)))
    save_genotype(tmp_path / "g.json", HeadGenotype(projector, HeadSpec((HeadLayer("linear", 8),)), "byol"))
    heads = build_model(tmp_path / "g.json", "heads", feature_dim=20)
    assert heads["projector"].eval()(torch.randn(3, 20)).shape == (3, 8)
    assert heads["predictor"](torch.randn(3, 8)).shape == (3, 8)
    for part in ("backbone", "encoder", "full"):
        with pytest.raises(GenotypeError, match="run directory"):
            build_model(tmp_path / "g.json", part)
    with pytest.raises(GenotypeError, match="feature_dim"):
        build_model(tmp_path / "g.json", "heads")


def test_a_search_run_rebuilds_with_its_found_heads(search_run):
    found = load_genotype(search_run / "genotype.json")
    heads = build_model(search_run, "heads")
    assert len(heads["projector"]) == len(found.projector.layers)
    backbone = load_pretrained(search_run)
    saved = load_file(str(search_run / "model.safetensors"))
    assert all(torch.equal(v, saved[f"backbone.{k}"]) for k, v in backbone.state_dict().items())
    with pytest.raises(RunDirError, match="supernet"):
        load_pretrained(search_run, "encoder")


def test_an_unfinished_search_builds_only_its_backbone(search_run, tmp_path):
    shutil.copytree(search_run, tmp_path / "unfinished")
    (tmp_path / "unfinished" / "genotype.json").unlink()
    assert build_model(tmp_path / "unfinished").out_dim == 16
    with pytest.raises(RunDirError, match="no genotype.json yet"):
        build_model(tmp_path / "unfinished", "heads")


def test_bad_targets_are_one_line_errors(run, tmp_path):
    (tmp_path / "stuff.txt").write_text("hi")
    for target in (tmp_path, tmp_path / "missing"):
        with pytest.raises(RunDirError, match="not a selfnas run") as info:
            load_pretrained(target)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown part"):
        build_model(run, "torso")


def test_the_example_embeds_images_of_a_run(run):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "use_found_model.py"), str(run)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "features (8, 16)" in proc.stdout
