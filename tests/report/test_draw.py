import shutil
import xml.etree.ElementTree as ET

import pytest
import yaml
from PIL import Image

from selfnas.config import build_config
from selfnas.errors import GenotypeError, RunDirError
from selfnas.models.genotype import HeadGenotype, save_genotype
from selfnas.models.heads import HeadLayer, HeadSpec
from selfnas.report.draw import COLOURS, backbone_chain, draw
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import TINY

GENOTYPE = HeadGenotype(
    HeadSpec(
        (HeadLayer("linear_bn_silu", 16), HeadLayer("max_pool_3", 16), HeadLayer("linear_bn_noaffine", 8))
    ),
    HeadSpec((HeadLayer("identity", 8), HeadLayer("linear", 8))),
    "simsiam",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("draw") / "run"
    Trainer(
        build_config(overrides=[*TINY, "optim.epochs=1", "run.knn_every=0"]), RunDir.prepare(path), quiet=True
    ).fit()
    return path


def _check(paths, texts):
    svg, png = paths
    assert (svg.suffix, png.suffix) == (".svg", ".png")
    image = Image.open(png).convert("RGB")
    assert image.width > 100 and image.height > 100
    assert len(image.getcolors(maxcolors=1 << 20)) > 2  # not blank
    root = ET.fromstring(svg.read_text())
    words = " ".join(t for node in root.iter() for t in (node.text or "",) if t.strip())
    for text in texts:
        assert text in words, text
    return svg.read_text()


def test_a_head_genotype(tmp_path):
    save_genotype(tmp_path / "genotype.json", GENOTYPE)
    svg = _check(
        draw(tmp_path / "genotype.json", tmp_path / "fig"),
        ["linear_bn_silu", "max_pool_3", "identity", "dim 8", "predictor"],
    )
    assert COLOURS["free"] in svg and COLOURS["op"] in svg  # parameter-free ops stand out


def test_a_training_run_draws_its_backbone_stages_and_heads(run, tmp_path):
    svg = _check(
        draw(run, tmp_path / "run"),
        ["stem conv3x3", "stage 2", "1 x block, 16 ch, /2", "linear_bn_relu", "linear_bn_noaffine"],
    )
    assert COLOURS["stage"] in svg and COLOURS["free"] not in svg


def test_a_run_with_a_genotype_draws_the_found_heads(run, tmp_path):
    shutil.copytree(run, tmp_path / "found")
    save_genotype(tmp_path / "found" / "genotype.json", GENOTYPE)
    _check(draw(tmp_path / "found", tmp_path / "out" / "found"), ["found heads", "stage 1", "max_pool_3"])


def test_an_unfinished_search_draws_its_backbone_only(run, tmp_path):
    shutil.copytree(run, tmp_path / "search")
    config = yaml.safe_load((tmp_path / "search" / "config.yaml").read_text())
    (tmp_path / "search" / "config.yaml").write_text(yaml.safe_dump({**config, "search": {}}))
    svg = _check(draw(tmp_path / "search", tmp_path / "fig"), ["search unfinished", "stage 1"])
    assert "linear_bn_relu" not in svg


def test_other_backbones_are_one_box():
    chain = backbone_chain("resnet18", {}, "cifar10")
    assert [b.label for b in chain.boxes] == ["image", "resnet18"]


def test_bad_targets_are_one_line_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"format": "selfnas-genotype", "version": 1, "space": "blocks"}')
    with pytest.raises(GenotypeError, match="unknown genotype space"):
        draw(tmp_path / "bad.json", tmp_path / "x")
    with pytest.raises(RunDirError, match="not a selfnas run"):
        draw(tmp_path, tmp_path / "x")
    assert not list(tmp_path.glob("x.*"))
