import json

import pytest
import torch
from torch import nn

from selfnas.errors import GenotypeError
from selfnas.models.cell_genotype import CellGenotype
from selfnas.models.cell_ops import CELL_OPS, DARTS_CELL_OPS
from selfnas.models.cells import CellNetwork
from selfnas.models.genotype import HeadGenotype, load_genotype, save_genotype
from selfnas.models.genotype_import import import_genotype, import_genotype_to_file
from selfnas.models.heads import build_head
from selfnas.models.published_genotypes import PUBLISHED_GENOTYPES

# as published in quark0/darts cnn/genotypes.py (one line each there)
DARTS_V1_TEXT = (
    "DARTS_V1 = Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), "
    "('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), "
    "('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)
DARTS_V2_TEXT = (
    "DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), "
    "('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), "
    "('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
# the same cells grouped per node, as D-X-Y/AutoDL-Projects writes them
DARTS_V2_PER_NODE = """Genotype(
  normal=[
    (('sep_conv_3x3', 0), ('sep_conv_3x3', 1)), # step 1
    (('sep_conv_3x3', 0), ('sep_conv_3x3', 1)), # step 2
    (('sep_conv_3x3', 1), ('skip_connect', 0)), # step 3
    (('skip_connect', 0), ('dil_conv_3x3', 2))  # step 4
  ],
  normal_concat=[2, 3, 4, 5],
  reduce=[
    (('max_pool_3x3', 0), ('max_pool_3x3', 1)),
    (('skip_connect', 2), ('max_pool_3x3', 1)),
    (('max_pool_3x3', 0), ('skip_connect', 2)),
    (('skip_connect', 2), ('max_pool_3x3', 1))
  ],
  reduce_concat=[2, 3, 4, 5],
  connectN=None, connects=None
)"""
# aheuillet/NASiam SimSiam/genotypes/cifar10_resnet18.txt and MoCo/genotypes/cifar10_resnet18.txt
NASIAM_SIMSIAM = (
    "Genotype(encoder=[['linear_relu'], ['linear_silu'], ['linear_elu'], ['identity'], ['identity'], "
    "['linear_relu']], predictor=[['linear_hardswish'], ['avgpool_3x3'], ['avgpool_3x3'], "
    "['linear_hardswish']])"
)
NASIAM_MOCO = "Genotype(encoder=[['avgpool_3x3'], ['identity'], ['identity']])"

#: DARTS paper, Table 1: DARTS (second order) on CIFAR-10, 3.3M parameters
PAPER_PARAMS = 3.3e6
#: what quark0/darts' own NetworkCIFAR(36, 10, 20, auxiliary=False, DARTS_V2) counts (measured)
DARTS_CODE_PARAMS = 3_349_342


def _v2_with(old: str, new: str) -> str:
    """The published DARTS_V2 text with the first ``old`` replaced by ``new``."""
    assert old in DARTS_V2_TEXT
    return DARTS_V2_TEXT.replace(old, new, 1)


def test_published_texts_import_to_the_shipped_genotypes():
    assert import_genotype(DARTS_V2_TEXT) == PUBLISHED_GENOTYPES.get("DARTS_V2")
    assert import_genotype(DARTS_V1_TEXT) == PUBLISHED_GENOTYPES.get("DARTS_V1")
    assert import_genotype("DARTS_V2") is PUBLISHED_GENOTYPES.get("DARTS_V2")
    assert import_genotype(DARTS_V1_TEXT) != import_genotype(DARTS_V2_TEXT)
    ranged = DARTS_V2_TEXT.split("= ", 1)[1].replace("[2, 3, 4, 5]", "range(2, 6)")
    v2 = PUBLISHED_GENOTYPES.get("DARTS_V2")
    assert import_genotype(ranged) == import_genotype(DARTS_V2_PER_NODE) == v2


def test_darts_op_names_are_ours():
    darts_primitives = [
        "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
        "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
    ]  # fmt: skip
    assert list(DARTS_CELL_OPS) == darts_primitives and all(op in CELL_OPS for op in darts_primitives)


def test_imported_darts_v2_builds_and_runs():
    net = CellNetwork.from_genotype(import_genotype(DARTS_V2_TEXT), in_channels=3, C=4, layers=5)
    net.eval()
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, net.out_dim)


def test_darts_v2_at_c36_20_cells_has_the_papers_parameter_count():
    net = CellNetwork.from_genotype(import_genotype(DARTS_V2_TEXT), in_channels=3, C=36, layers=20)
    classifier = nn.Linear(net.out_dim, 10)  # CellNetwork ends at the pooled features
    count = sum(p.numel() for m in (net, classifier) for p in m.parameters())
    assert abs(count - PAPER_PARAMS) <= 0.05 * PAPER_PARAMS
    assert count == DARTS_CODE_PARAMS  # their auxiliary head (476,426 more) is not counted


@pytest.mark.parametrize(
    "text, says",
    [
        ("__import__('os').system('touch PWNED')", "expected Genotype(...)"),
        ("Genotype(normal=__import__('os').system('touch PWNED'))", "only literals"),
        ('Genotype(encoder=[[exec(\'open("PWNED", "w")\')]])', "only literals"),
        ("Genotype(normal=[('sep_conv_3x3', 0)] * 8)", "only literals"),
        ("import os", "neither a published genotype"),
        ("DARTS_V3", "DARTS_V1, DARTS_V2"),
        ("[1, 2]", "expected Genotype(...)"),
        ("x = y = Genotype()", "not a genotype"),
        ("Genotype(", "does not parse"),
        ("Genotype([], [2], [], [2])", "name every Genotype field"),
        ("Genotype(genes=[])", "neither DARTS's"),
        (_v2_with("('sep_conv_3x3', 1)", "('sep_conv_7x7', 1)"), "'sep_conv_7x7' is not one of"),
        (_v2_with("('skip_connect', 0)", "('none', 0)"), "'none' is not one of"),
        (_v2_with("('dil_conv_3x3', 2)], normal_concat", "], normal_concat"), "7 (op, input) pairs"),
        (_v2_with("('sep_conv_3x3', 1)", "('sep_conv_3x3', 5)"), "reads input 5"),
        (_v2_with("('sep_conv_3x3', 1)", "('sep_conv_3x3', -1)"), "reads input -1"),
        (_v2_with("('sep_conv_3x3', 1)", "('sep_conv_3x3', 0)"), "reads input 0 twice"),
        (_v2_with("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 3, 4]"), "range(2, 6)"),
        (_v2_with("normal_concat=[2, 3, 4, 5]", "normal_concat=range(0, 10**9)"), "only literals"),
        (_v2_with("normal_concat=[2, 3, 4, 5]", "normal_concat=range(0, 1000000000)"), "more than 64"),
        (_v2_with(", reduce_concat=[2, 3, 4, 5]", ""), "missing fields ['reduce_concat']"),
        (DARTS_V2_PER_NODE.replace("1)), # step 2", "1), ('skip_connect', 0)),"), "node 1 has 3 edges"),
        (DARTS_V2_PER_NODE.replace("connects=None", "connects=[1]"), "no extra connections"),
        ("Genotype(encoder=[['linear_gelu']])", "unknown op 'linear_gelu'"),
        ("Genotype(encoder=[['identity', 'linear_relu']])", "one op in a list"),
        ("Genotype(predictor=[])", "list of 1 to 64"),
        ("Genotype(normal=[" + "('sep_conv_3x3', 0), " * 10_000 + "])", "more than 100000"),
        ("[" * 500 + "]" * 500, "does not parse"),
        ("Genotype(normal=" + "9" * 5000 + ")", "does not parse"),
        ('{"format": "selfnas-genotype", "version": 1, "space": "cells"', "not valid JSON"),
    ],
)
def test_malformed_texts_are_one_line_errors_and_run_nothing(text, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GenotypeError) as err:
        import_genotype(text)
    message = str(err.value)
    assert says in message and "\n" not in message and len(message) < 300
    assert list(tmp_path.iterdir()) == []


def test_nasiam_simsiam_heads_are_laid_out_as_nasiams_builder_does():
    g = import_genotype(NASIAM_SIMSIAM, backbone_dim=16, out_dim=32, hidden_dim=8)
    assert isinstance(g, HeadGenotype) and g.method == "simsiam"
    assert [(layer.op, layer.dim) for layer in g.projector.layers] == [
        ("linear_bn_relu", 16), ("linear_bn_silu", 16), ("linear_bn_elu", 16), ("identity", 16),
        ("identity", 16), ("linear_bn_relu", 16), ("linear_bn_noaffine", 32),
    ]  # fmt: skip
    assert g.predictor is not None
    assert [(layer.op, layer.dim) for layer in g.predictor.layers] == [
        ("linear_bn_hardswish", 8), ("avg_pool_3", 8), ("avg_pool_3", 8), ("linear", 32),
    ]  # fmt: skip
    projector, predictor = build_head(g.projector, 16), build_head(g.predictor, 32)
    z = projector(torch.randn(4, 16))
    assert z.shape == (4, 32) and predictor(z).shape == (4, 32)


def test_nasiam_width_changes_and_other_methods():
    moco = import_genotype(NASIAM_MOCO, backbone_dim=16)
    assert moco.method == "moco" and moco.predictor is None
    assert [(layer.op, layer.dim) for layer in moco.projector.layers] == [
        ("avg_pool_3", 16), ("identity", 16), ("identity", 16), ("linear", 128),
    ]  # fmt: skip
    assert build_head(moco.projector, 16)(torch.randn(3, 16)).shape == (3, 128)
    simclr = import_genotype(
        "Genotype(predictor=[['maxpool_3x3'], ['linear_relu'], ['identity']])",
        backbone_dim=16, hidden_dim=8, out_dim=12,
    )  # fmt: skip
    assert simclr.method == "simclr"
    assert [(layer.op, layer.dim) for layer in simclr.projector.layers] == [
        ("linear_bn_relu", 8), ("max_pool_3", 8), ("linear_bn_relu", 8), ("linear", 12), ("identity", 12),
    ]  # fmt: skip
    assert build_head(simclr.projector, 16).eval()(torch.randn(3, 16)).shape == (3, 12)


def test_files_json_and_the_cli_function(tmp_path):
    source = tmp_path / "cifar10_resnet18.txt"
    source.write_text(NASIAM_SIMSIAM + "\n")
    assert import_genotype(str(source)) == import_genotype(source) == import_genotype(NASIAM_SIMSIAM)
    out = tmp_path / "genotype.json"
    written = import_genotype_to_file(DARTS_V2_TEXT, out)
    assert written == json.loads(out.read_text()) and written["space"] == "cells"
    assert load_genotype(out) == PUBLISHED_GENOTYPES.get("DARTS_V2")
    assert import_genotype(out.read_text()) == load_genotype(out)  # a selfnas JSON imports too
    with pytest.raises(GenotypeError, match="not found"):
        import_genotype(tmp_path / "missing.txt")
    big = tmp_path / "big.txt"
    big.write_text(" " * 100_001)
    with pytest.raises(GenotypeError, match="more than 100000"):
        import_genotype(str(big))
    bad = tmp_path / "bad.json"
    with pytest.raises(GenotypeError):
        import_genotype_to_file("Genotype(encoder=[['nope']])", bad)
    assert not bad.exists()


def test_shipped_genotypes_save_and_load(tmp_path):
    for name in PUBLISHED_GENOTYPES:
        genotype = PUBLISHED_GENOTYPES.get(name)
        assert isinstance(genotype, CellGenotype)
        save_genotype(tmp_path / f"{name}.json", genotype)
        assert load_genotype(tmp_path / f"{name}.json") == genotype
