import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from selfnas.api import with_genotype
from selfnas.build import load_pretrained, load_run_config
from selfnas.config import build_config
from selfnas.errors import ExportError, RunDirError
from selfnas.evaluation import evaluate
from selfnas.export import ONNX_OPSET, export_run, save_onnx
from selfnas.models.backbones import create_backbone
from selfnas.models.genotype import load_genotype
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.rundir import RunDir
from selfnas.training.trainer import Trainer
from tests.conftest import TINY

FAST = [*TINY, "optim.epochs=1", "run.knn_every=0"]
SEARCH = ["search.projector_layers=2", "search.predictor_layers=1"]

# each runs in a fresh interpreter on the input x.npy and saves features.npy; the ONNX one without torch
STANDALONE = {
    "pt2": """
import sys
import numpy as np
import torch
from safetensors.torch import load_file

export, x, out = sys.argv[1:4]
program = torch.export.load(export + "/backbone.pt2").module()
x = torch.from_numpy(np.load(x))
with torch.no_grad():
    np.save(out, torch.cat([program(x), program(x[:1])]).numpy())  # two batch sizes
keys = list(load_file(export + "/backbone.safetensors"))
assert not any(k.startswith(("module.", "encoder.", "backbone.")) for k in keys), keys
assert "selfnas" not in sys.modules, "the export must not need selfnas"
print("standalone ok")
""",
    "onnx": """
import sys
import numpy as np
import onnxruntime as ort

export, x, out = sys.argv[1:4]
session = ort.InferenceSession(export + "/backbone.onnx", providers=["CPUExecutionProvider"])
x = np.load(x)
np.save(out, np.concatenate([session.run(["features"], {"images": v})[0] for v in (x, x[:1])]))
assert "selfnas" not in sys.modules and "torch" not in sys.modules, "ONNX must need neither"
print("standalone ok")
""",
}
#: what replaces a card snippet's `images = ...  # your images` line: the test's uint8 images
CARD_IMAGES = {
    "pt2": "images = torch.from_numpy(np.load('images.npy'))",
    "onnx": "images = np.load('images.npy')",
}
#: appended to a card snippet: keep its features, and check it ran without selfnas
CARD_END = """
np.save("features.npy", np.asarray(features))
assert "selfnas" not in sys.modules, "the card's snippet must not need selfnas"
print("standalone ok")
"""
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def run_fresh(code: str, *args: str, cwd: Path) -> None:
    """Run ``code`` in a fresh interpreter; it must print "standalone ok"."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=ENV
    )
    assert proc.returncode == 0 and "standalone ok" in proc.stdout, proc.stderr


def card_snippet(card: str, file: str) -> str:
    """The python code block of MODEL_CARD.md that loads ``file``."""
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", card, re.S) if f'"{file}"' in b]
    return block


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    Trainer(build_config(overrides=FAST), RunDir.prepare(root / "run"), quiet=True).fit()
    evaluate(root / "run", device="cpu", linear=False)
    result = export_run(root / "run", root / "out")
    return root / "run", root / "out", result


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_exported_programs_run_without_selfnas_and_match(exported, tmp_path, fmt):
    run, out, _ = exported
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))  # traced with 2, checked with 3
    np.save(tmp_path / "x.npy", x.numpy())
    run_fresh(STANDALONE[fmt], str(out), str(tmp_path / "x.npy"), str(tmp_path / "f.npy"), cwd=tmp_path)
    with torch.no_grad():
        ours = load_pretrained(run)(torch.cat([x, x[:1]])).numpy()
    theirs = np.load(tmp_path / "f.npy")
    assert ours.shape == theirs.shape == (6, 16)
    assert np.abs(theirs - ours).max() <= 1e-4


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_the_model_card_snippets_run_as_written(exported, tmp_path, fmt):
    run, out, result = exported
    snippet = card_snippet((out / "MODEL_CARD.md").read_text(), f"backbone.{fmt}")
    code, n = re.subn(r"^images = .*# your images.*$", CARD_IMAGES[fmt], snippet, flags=re.M)
    assert n == 1, "the snippet's images line is what a user replaces"
    folder = shutil.copytree(out, tmp_path / "export")  # the snippet runs in the export folder
    images = torch.randint(0, 256, (4, 3, 16, 16), generator=torch.Generator().manual_seed(3)).to(torch.uint8)
    np.save(folder / "images.npy", images.numpy())
    run_fresh(f"import sys\nimport numpy as np\n{code}\n{CARD_END}", cwd=folder)
    mean, std = (torch.tensor(result[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        ours = load_pretrained(run)((images.float() / 255 - mean) / std).numpy()
    theirs = np.load(folder / "features.npy")
    assert theirs.shape == ours.shape == (4, 16)
    assert np.abs(theirs - ours).max() <= 1e-4


def test_the_model_card_loads_the_weights_into_selfnas(exported, monkeypatch):
    run, out, _ = exported
    monkeypatch.chdir(out)  # the snippet names the files relative to the export folder
    scope: dict[str, object] = {}
    exec(card_snippet((out / "MODEL_CARD.md").read_text(), "backbone.safetensors"), scope)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(scope["backbone"](x), load_pretrained(run)(x))


def test_the_onnx_file_states_its_opset_and_a_dynamic_batch(exported):
    _, out, result = exported
    model = onnx.load(str(out / "backbone.onnx"))
    assert {o.domain: o.version for o in model.opset_import}[""] == ONNX_OPSET == result["onnx_opset"]
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (
        *model.graph.input, *model.graph.output)}  # fmt: skip
    assert dims == {"images": ["batch", 3, 16, 16], "features": ["batch", 16]}
    assert f"opset {ONNX_OPSET}" in (out / "MODEL_CARD.md").read_text()


def test_an_onnx_model_that_does_not_match_is_refused_and_not_left_behind(tmp_path):
    torch.manual_seed(0)
    traced, other = (
        create_backbone("resnet_small", in_channels=3, width=8, depths=[1, 1]).eval() for _ in "ab"
    )
    x = torch.randn(2, 3, 16, 16)
    program = torch.export.export(traced, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    with pytest.raises(ExportError, match="ONNX export differs from the torch backbone") as info:
        save_onnx(tmp_path / "backbone.onnx", program, other, [3, 16, 16])
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # neither the model nor its temp file


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
    files = {"backbone.pt2", "backbone.onnx", "backbone.safetensors", "config.yaml", "MODEL_CARD.md"}
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
