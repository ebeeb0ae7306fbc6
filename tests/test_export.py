import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from selfnas.api import with_genotype
from selfnas.build import load_pretrained, load_run_config
from selfnas.config import build_config
from selfnas.errors import RunDirError
from selfnas.evaluation import evaluate
from selfnas.export import export_run
from selfnas.models.backbones import create_backbone
from selfnas.models.genotype import load_genotype
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import TINY

FAST = [*TINY, "optim.epochs=1", "run.knn_every=0"]
SEARCH = ["search.projector_layers=2", "search.predictor_layers=1"]

# run in a fresh interpreter with torch and safetensors only: features of backbone.pt on a seeded input
STANDALONE = """
import sys
import torch
from safetensors.torch import load_file, save_file

export, out = sys.argv[1], sys.argv[2]
backbone = torch.jit.load(export + "/backbone.pt").eval()
program = torch.export.load(export + "/backbone.pt2").module()
x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    features = backbone(x)
    exported = program(x)
    assert program(x[:1]).shape == (1, features.shape[1])  # any batch size
keys = list(load_file(export + "/backbone.safetensors"))
assert not any(k.startswith(("module.", "encoder.", "backbone.")) for k in keys), keys
save_file({"x": x, "features": features, "exported": exported}, out)
assert "selfnas" not in sys.modules, "the export must not need selfnas"
print("standalone ok")
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    Trainer(build_config(overrides=FAST), RunDir.prepare(root / "run"), quiet=True).fit()
    evaluate(root / "run", device="cpu", linear=False)
    result = export_run(root / "run", root / "out")
    return root / "run", root / "out", result


def test_exported_programs_run_without_selfnas_and_match(exported, tmp_path):
    run, out, _ = exported
    proc = subprocess.run(
        [sys.executable, "-c", STANDALONE, str(out), str(tmp_path / "f.safetensors")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert proc.returncode == 0 and "standalone ok" in proc.stdout, proc.stderr
    saved = load_file(str(tmp_path / "f.safetensors"))
    with torch.no_grad():
        ours = load_pretrained(run)(saved["x"])
    assert ours.shape == (5, 16)
    assert (saved["features"] - ours).abs().max() <= 1e-5
    assert (saved["exported"] - ours).abs().max() <= 1e-5


def test_clean_weights_load_strictly_into_a_fresh_backbone(exported):
    run, out, result = exported
    state = load_file(str(out / "backbone.safetensors"))
    config = load_run_config(RunDir(run))
    fresh = create_backbone(config.model.backbone, in_channels=3, **config.model.backbone_kwargs)
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), load_pretrained(run)(x))
    with safe_open(str(out / "backbone.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == "selfnas-backbone-1" and json.loads(meta["input_shape"]) == [3, 16, 16]
    assert result["feature_dim"] == 16 and len(result["mean"]) == 3


def test_the_export_holds_config_and_model_card(exported):
    run, out, result = exported
    files = {"backbone.pt2", "backbone.pt", "backbone.safetensors", "config.yaml", "MODEL_CARD.md"}
    assert set(result["files"]) == files
    assert (out / "config.yaml").read_bytes() == (run / "config.yaml").read_bytes()
    assert not (out / "genotype.json").exists()
    card = (out / "MODEL_CARD.md").read_text()
    provenance = json.loads((run / "provenance.json").read_text())
    for needle in (
        "simsiam",
        "synthetic",
        "resnet_small",
        "1 epochs x batch 64",
        "seed: 0",
        "kNN top-1",
        'torch.export.load("backbone.pt2")',
    ):
        assert needle in card
    assert f"torch {provenance['versions']['torch']}" in card
    assert "linear_bn_relu(32)" in card  # the heads used in pretraining


def test_a_search_run_exports_its_genotype(tmp_path):
    cfg = build_config(overrides=[*FAST, *SEARCH])
    HeadSearchTrainer(cfg, RunDir.prepare(tmp_path / "search"), quiet=True).fit()
    result = export_run(tmp_path / "search", tmp_path / "out")
    assert "genotype.json" in result["files"]
    assert (tmp_path / "out" / "genotype.json").read_bytes() == (
        tmp_path / "search" / "genotype.json"
    ).read_bytes()
    card = (tmp_path / "out" / "MODEL_CARD.md").read_text()
    found = load_genotype(tmp_path / "out" / "genotype.json")
    assert "found by the search" in card and all(layer.op in card for layer in found.projector.layers)
    assert "Not evaluated yet" in card


def test_bad_inputs_are_one_line_errors(exported, tmp_path):
    run, _, _ = exported
    (tmp_path / "notes.txt").write_text("not a run")
    with pytest.raises(RunDirError, match="not a selfnas run") as info:
        export_run(tmp_path, tmp_path / "out")
    assert "\n" not in str(info.value)
    with pytest.raises(RunDirError, match="another folder"):
        export_run(run, run)


def test_a_run_pretrained_from_a_genotype_exports_that_genotype(tmp_path):
    cfg = build_config(overrides=[*FAST, *SEARCH])
    HeadSearchTrainer(cfg, RunDir.prepare(tmp_path / "search"), quiet=True).fit()
    retrained = with_genotype(build_config(overrides=FAST), tmp_path / "search" / "genotype.json")
    Trainer(retrained, RunDir.prepare(tmp_path / "found"), quiet=True).fit()
    result = export_run(tmp_path / "found", tmp_path / "out")
    assert "genotype.json" in result["files"]
    exported, searched = (load_genotype(p / "genotype.json") for p in (tmp_path / "out", tmp_path / "search"))
    assert exported.projector == searched.projector and exported.predictor == searched.predictor
