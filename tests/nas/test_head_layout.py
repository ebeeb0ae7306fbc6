"""``search.layout``: the selfnas head layout (every method alike) next to NASiam's own (its layer
counts per method, BatchNorm after pools, a predictor bottleneck), in the supernet, in the derived
heads, in the genotype and back through ``train --genotype``."""

import json

import pytest
import torch
from torch import nn

from selfnas.api import with_genotype
from selfnas.config import SearchConfig, build_config
from selfnas.errors import ConfigError, GenotypeError
from selfnas.methods import method_record
from selfnas.models.genotype import HeadGenotype, genotype_from_json, load_genotype, save_genotype
from selfnas.models.head_ops import FeaturePool1d
from selfnas.models.heads import HeadLayer, HeadSpec, build_head
from selfnas.nas.spaces.heads import HeadSearchSpace, SearchHead, head_spaces
from selfnas.nas.strategies.darts import HeadSearchTrainer
from selfnas.rundir import RunDir
from selfnas.training.builder import build_method

METHODS = ("simsiam", "moco", "simclr", "byol")
#: (projector searched layers, its final op, predictor searched layers) per method and layout
EXPECTED = {
    "selfnas": {m: (6, "linear_bn_noaffine", 4 if m in ("simsiam", "byol") else None) for m in METHODS},
    "nasiam": {
        "simsiam": (6, "linear_bn_noaffine", 4),
        "moco": (4, "linear", None),
        "simclr": (6, None, None),
        "byol": (6, "linear", 4),
    },
}


def spaces(layout, method, proj_out=32, backbone_dim=64, **search):
    config = SearchConfig(layout=layout, **search)
    return head_spaces(config, proj_out, backbone_dim, method_record(method))


def supernets(layout, method, proj_out=32, backbone_dim=64, **search):
    projector, predictor = spaces(layout, method, proj_out, backbone_dim, **search)
    return SearchHead(projector, backbone_dim), predictor and SearchHead(predictor, proj_out)


@pytest.mark.parametrize("layout", ["selfnas", "nasiam"])
@pytest.mark.parametrize("method", METHODS)
def test_layer_counts_and_final_layer_per_method_and_layout(layout, method):
    layers, final_op, pred_layers = EXPECTED[layout][method]
    projector, predictor = supernets(layout, method)
    assert len(projector.mixed) == projector.alpha.shape[0] == layers
    derived = projector.derive()
    if final_op is None:  # the last searched layer gives the output itself
        assert len(derived.layers) == layers and isinstance(projector.final, nn.Identity)
    else:
        assert len(derived.layers) == layers + 1 and derived.layers[-1].op == final_op
    assert derived.out_dim == 32 and projector(torch.randn(4, 64)).shape == (4, 32)
    assert (predictor is None) == (pred_layers is None)
    if predictor is not None:
        assert len(predictor.mixed) == pred_layers
        assert predictor(torch.randn(4, 32)).shape == (4, 32)


def test_nasiam_widths_are_nasiams_at_its_own_dims():
    """SimSiam (dim 2048): predictor 2048 -> 512 -> 512 -> 512 -> 2048; SimCLR: 2048 -> 512 ... -> 128."""
    projector, predictor = spaces("nasiam", "simsiam", proj_out=2048, backbone_dim=2048)
    assert projector.layer_dims(2048) == [(2048, 2048)] * 6
    assert predictor.width == 512
    assert predictor.layer_dims(2048) == [(2048, 512), (512, 512), (512, 512), (512, 2048)]
    simclr, _ = spaces("nasiam", "simclr", proj_out=128, backbone_dim=2048)
    assert simclr.layer_dims(2048) == [(2048, 512)] + [(512, 512)] * 4 + [(512, 128)]


def test_predictor_bottleneck_is_a_quarter_of_the_output_only_in_nasiam():
    _, nasiam = supernets("nasiam", "byol", proj_out=32)
    _, selfnas = supernets("selfnas", "byol", proj_out=32)
    first = nasiam.mixed[0].ops[nasiam.space.ops.index("linear_bn_relu")]
    assert first[0].in_features == 32 and first[0].out_features == 8  # 32 // 4
    assert [layer.dim for layer in nasiam.derive().layers] == [8, 8, 8, 32]
    assert [layer.dim for layer in selfnas.derive().layers] == [32] * 5
    _, wider = supernets("nasiam", "byol", proj_out=32, pred_width=16)  # search.pred_width still rules
    assert [layer.dim for layer in wider.derive().layers] == [16, 16, 16, 32]


def _pool_candidates(head):
    for layer in head.mixed:
        for name, op in zip(layer.names, layer.ops, strict=True):
            if name in ("max_pool_3", "avg_pool_3"):
                yield op


def _after_pool(op):
    """The module right after the pool in a candidate (None: the pool is last, or alone)."""
    modules = list(op) if isinstance(op, nn.Sequential) else [op]
    i = next(i for i, m in enumerate(modules) if isinstance(m, FeaturePool1d))
    return modules[i + 1] if i + 1 < len(modules) else None


@pytest.mark.parametrize("method", METHODS)
def test_batchnorm_follows_the_pools_only_in_the_nasiam_layout(method):
    for head in filter(None, supernets("nasiam", method)):
        pools = list(_pool_candidates(head))
        assert pools and all(isinstance(_after_pool(op), nn.BatchNorm1d) for op in pools)
        identity = head.mixed[1].ops[head.space.ops.index("identity")]
        assert isinstance(identity, nn.Identity)  # no BatchNorm after the other parameter-free op
    for head in filter(None, supernets("selfnas", method)):
        pools = list(_pool_candidates(head))
        assert pools and all(isinstance(op, FeaturePool1d) for op in pools)


def test_nasiam_wrappers_where_a_layer_changes_the_width():
    """NASiam's op wrappers: narrowing, Linear-BN-ReLU before a pool (identity is just that);
    widening, a bare Linear (any linear op is just that) before a pool."""
    narrow = HeadSearchSpace(1, 8, 8, None, ("identity", "avg_pool_3", "linear_bn_silu"), "nasiam")
    assert [layer.op for layer in narrow.spec(["identity"], 32).layers] == ["linear_bn_relu"]
    assert [layer.op for layer in narrow.spec(["linear_bn_silu"], 32).layers] == ["linear_bn_silu"]
    pool = build_head(narrow.spec(["avg_pool_3"], 32), 32)[0]
    assert [type(m) for m in pool] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, FeaturePool1d, nn.BatchNorm1d]
    assert pool[0].bias is None
    wide = HeadSearchSpace(2, 8, 32, None, ("identity", "max_pool_3", "linear_bn_silu"), "nasiam")
    assert wide.spec(["identity", "linear_bn_silu"], 16).layers[-1] == HeadLayer("linear", 32)
    pool = build_head(wide.spec(["identity", "max_pool_3"], 8), 8)[1]
    assert [type(m) for m in pool] == [nn.Linear, FeaturePool1d, nn.BatchNorm1d]
    assert pool[0].bias is not None and pool[0].out_features == 32


def _pick(head, choices):
    with torch.no_grad():
        for layer, op in enumerate(choices):
            head.alpha[layer, head.space.ops.index(op)] = 1.0


def _same_modules(supernet, rebuilt):
    """Each rebuilt layer is the supernet's chosen candidate, module for module."""
    picks = supernet.weights().argmax(dim=1).tolist()
    chosen = [mixed.ops[i] for mixed, i in zip(supernet.mixed, picks, strict=True)]
    if supernet.space.final_op:
        chosen.append(supernet.final)
    assert [repr(m) for m in rebuilt] == [repr(m) for m in chosen]
    for a, b in zip(rebuilt, chosen, strict=True):
        assert [(k, v.shape) for k, v in a.state_dict().items()] == [
            (k, v.shape) for k, v in b.state_dict().items()
        ]


def test_a_nasiam_genotype_rebuilds_the_modules_it_was_searched_as(tmp_path, tiny_overrides):
    config = build_config(overrides=[*tiny_overrides, "method.name=simsiam"])
    backbone_dim = build_method(config, 1).backbone.out_dim
    projector, predictor = supernets("nasiam", "simsiam", config.method.proj_out, backbone_dim)
    _pick(projector, ["avg_pool_3", "linear_bn_elu", "identity", "max_pool_3", "linear_bn_silu", "identity"])
    _pick(predictor, ["max_pool_3", "avg_pool_3", "linear_bn_hardswish", "avg_pool_3"])
    found = HeadGenotype(projector.derive(), predictor.derive(), "simsiam", "nasiam")
    save_genotype(tmp_path / "g.json", found)
    assert json.loads((tmp_path / "g.json").read_text())["layout"] == "nasiam"
    assert load_genotype(tmp_path / "g.json") == found
    model = build_method(with_genotype(config, tmp_path / "g.json"), 1)  # as `selfnas train --genotype`
    _same_modules(projector, model.projector)
    _same_modules(predictor, model.predictor)


def test_a_short_nasiam_search_records_its_layout_and_rebuilds_the_same_heads(tmp_path, tiny_overrides):
    overrides = [*tiny_overrides, "method.name=simclr", "search.layout=nasiam", "run.knn_every=0",
                 "optim.epochs=1"]  # fmt: skip
    config = build_config(overrides=overrides)
    trainer = HeadSearchTrainer(config, RunDir.prepare(tmp_path / "s"), quiet=True)
    trainer.fit()
    supernet = trainer.model.projector
    assert supernet.alpha.shape[0] == 6 and supernet.alpha.abs().sum() > 0
    found = load_genotype(tmp_path / "s" / "genotype.json")
    assert found.layout == "nasiam" and found.method == "simclr" and len(found.projector.layers) == 6
    model = build_method(with_genotype(config, tmp_path / "s" / "genotype.json"), 1)
    _same_modules(supernet, model.projector)


def _genotype(
    layout="nasiam", method="moco", searched=4, final="linear", pool="avg_pool_3_bn", predictor=None
):
    layers = [HeadLayer(pool, 16)] + [HeadLayer("identity", 16)] * (searched - 1) + [HeadLayer(final, 8)]
    data = HeadGenotype(HeadSpec(tuple(layers)), predictor, method).to_json()
    return data | {"layout": layout}


def test_genotypes_without_a_layout_load_as_selfnas_and_write_no_key():
    old = _genotype(searched=6, pool="avg_pool_3")
    del old["layout"]
    loaded = genotype_from_json(old)
    assert loaded.layout == "selfnas" and "layout" not in loaded.to_json()
    nasiam = genotype_from_json(_genotype())
    assert nasiam.layout == "nasiam" and genotype_from_json(nasiam.to_json()) == nasiam


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_genotype(searched=6), "a moco projector is 4 searched layers + final 'linear'"),
        (_genotype(final="linear_bn_noaffine"), "ending in 'linear_bn_noaffine'"),
        (_genotype(pool="avg_pool_3"), "use 'avg_pool_3_bn'"),
        (_genotype(method="simsiam", searched=6, final="linear_bn_noaffine"), "needs a searched predictor"),
        (_genotype(method=None), "needs its 'method'"),
        (_genotype(layout="darts"), "unknown head layout 'darts'"),
        (_genotype(layout=["nasiam"]), "unknown head layout"),
    ],
)
def test_a_genotype_that_does_not_fit_its_layout_is_one_line(data, says):
    with pytest.raises(GenotypeError) as err:
        genotype_from_json(data)
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["search.layout=nasiam", "search.projector_layers=3"], "drop search.projector_layers"),
        (["search.layout=nasiam", "search.predictor_layers=2"], "drop search.predictor_layers"),
        (["search.space=cells", "search.layout=nasiam"], "applies to search.space=heads only"),
        (["search.layout=NASiam"], "search.layout"),
    ],
)
def test_config_refuses_a_layout_it_cannot_build(overrides, says):
    with pytest.raises(ConfigError) as err:
        build_config(overrides=overrides)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert build_config(overrides=["search.layout=nasiam"]).search.layout == "nasiam"
    assert SearchConfig().layout == "selfnas"
