"""Per-view BatchNorm in the SSL methods: the one batched forward equals each method's loss
computed with separate forwards of the two views (loss, embedding, every gradient, every
running statistic, target networks included), the flag selects the joint batch of old, and
the DARTS supernets (searched heads, cell backbone) are covered too."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from selfnas.config import build_config
from selfnas.methods import method_record
from selfnas.models.backbones import create_backbone
from selfnas.models.heads import default_heads
from selfnas.ssl.base import SSLMethod
from selfnas.ssl.losses import info_nce, negative_cosine_similarity, nt_xent
from selfnas.ssl.registry import METHODS, create_method
from selfnas.training.builder import build_method

TOL = {"rtol": 1e-5, "atol": 1e-5}
DTYPE = torch.float64  # batched and separate convolutions round differently in float32


def make(name: str, per_view_bn: bool | None, backbone: nn.Module | None = None, heads=None) -> SSLMethod:
    """``name`` on a small resnet_small (or ``backbone``), in float64, training mode; ``heads``:
    a function of the backbone's width returning (projector, predictor), default the method's."""
    torch.manual_seed(0)
    backbone = backbone or create_backbone("resnet_small", in_channels=1, width=8, depths=[1, 1])
    if heads is not None:
        projector, predictor = heads(backbone.out_dim)
    else:
        projector, predictor = default_heads(method_record(name), 16, 12, 6)
        predictor = predictor if method_record(name).needs_predictor else None
    hp = {"queue_size": 32} if name == "moco" else {}
    model = create_method(method_record(name), backbone, projector, predictor, per_view_bn=per_view_bn, **hp)
    return model.to(DTYPE).train()


def views(n: int = 4, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views with different statistics, so that mixing them in BatchNorm shows."""
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(n, 1, side, side, generator=g, dtype=DTYPE)
    return x1, 3 * torch.randn(n, 1, side, side, generator=g, dtype=DTYPE) + 2


def reference(model: SSLMethod, x1: torch.Tensor, x2: torch.Tensor, separate: bool):
    """(loss, embedding) of ``model`` written out: each network runs on each view separately
    (the papers), or on the joint 2N batch (plain BatchNorm over both views)."""
    n = x1.shape[0]

    def run(f, x):  # 2N x ... -> 2N x D
        return torch.cat([f(x[:n]), f(x[n:])]) if separate else f(x)

    x = torch.cat([x1, x2])
    if model.name == "moco":
        q, k = run(model.encode, x), run(model.key_encoder, x)
        queue, t = model.queue.clone(), model.temperature
        return (info_nce(q[:n], k[n:], queue, t) + info_nce(q[n:], k[:n], queue, t)) / 2, q[:n]
    z = run(model.encode, x)
    if model.name == "simclr":
        return nt_xent(z[:n], z[n:], model.temperature), z[:n]
    p = run(model.predictor, z)
    if model.name == "simsiam":
        loss = negative_cosine_similarity(p[:n], z[n:]) / 2 + negative_cosine_similarity(p[n:], z[:n]) / 2
        return loss, z[:n]
    t = run(model.target, x)
    return 2 + negative_cosine_similarity(p[:n], t[n:]) + negative_cosine_similarity(p[n:], t[:n]), z[:n]


def state(model: SSLMethod, loss: torch.Tensor, embedding: torch.Tensor) -> dict:
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    return {
        "loss": loss.detach(),
        "embedding": embedding.detach(),
        "grads": grads,
        "buffers": list(model.buffers()),
    }


def assert_matches_reference(model: SSLMethod, separate: bool, call=None) -> None:
    """One training forward of ``model`` equals :func:`reference` on a deep copy."""
    ref = copy.deepcopy(model)
    x1, x2 = views()
    out = call(model, x1, x2) if call else model(x1, x2)
    got = state(model, out.loss, out.embedding)
    want = state(ref, *reference(ref, x1, x2, separate))
    for key in got:
        assert_close(got[key], want[key], **TOL, msg=lambda m, key=key: f"{key}: {m}")
    plain = (nn.BatchNorm1d, nn.BatchNorm2d)
    assert all(type(m) in plain for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


@pytest.mark.parametrize("name", METHODS.names())
def test_per_view_bn_equals_separate_forwards_of_the_views(single_thread, name):
    assert_matches_reference(make(name, per_view_bn=True), separate=True)


@pytest.mark.parametrize("name", METHODS.names())
def test_per_view_bn_off_is_the_joint_batch_of_old(single_thread, name):
    assert_matches_reference(make(name, per_view_bn=False), separate=False)


@pytest.mark.parametrize("name", METHODS.names())
def test_default_follows_the_reference_code(single_thread, name):
    """SimCLR's reference code encodes both views as one batch; SimSiam, BYOL, MoCo per view."""
    model = make(name, per_view_bn=None)
    assert model.per_view_bn is None
    assert_matches_reference(model, separate=name != "simclr")


def test_the_two_settings_really_differ(single_thread):
    """Sanity of the tests above: on these views the joint batch changes the embedding."""
    model = make("simsiam", per_view_bn=True)
    x1, x2 = views()
    per_view = model(x1, x2).embedding
    model.per_view_bn = False
    assert (model(x1, x2).embedding - per_view).abs().max() > 1e-2


def test_config_flag_reaches_the_method():
    base = ["data.name=synthetic", "method.name=byol"]
    assert build_config(overrides=base).method.per_view_bn is None
    for value in (True, False):
        config = build_config(overrides=[*base, f"method.per_view_bn={str(value).lower()}"])
        assert build_method(config, in_channels=1).per_view_bn is value


# -- the DARTS supernets: searched heads (every head op) and the cell backbone ------------


def _search_heads(name: str):
    """The DARTS head supernets (every searched head op in each mixed layer) for ``name``."""
    from selfnas.config import SearchConfig
    from selfnas.nas.spaces.heads import SearchHead, head_spaces

    def heads(in_dim: int):
        search = SearchConfig(projector_layers=2, predictor_layers=2, width=16)
        spaces = head_spaces(search, 12, in_dim, method_record(name))
        return SearchHead(spaces[0], in_dim), None if spaces[1] is None else SearchHead(spaces[1], 12)

    return heads


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_searched_heads_equal_separate_forwards(single_thread, name):
    model = make(name, per_view_bn=True, heads=_search_heads(name))
    assert_matches_reference(model, separate=True)


def test_cell_supernet_backbone_equals_separate_forwards(single_thread):
    from selfnas.nas.spaces.cells import CellSearchSpace, CellSupernet

    torch.manual_seed(0)
    backbone = CellSupernet(CellSearchSpace(nodes=2, C=4, layers=3), in_channels=1)
    assert_matches_reference(make("simclr", per_view_bn=True, backbone=backbone), separate=True)


def test_functional_call_of_second_order_darts_is_per_view_too(single_thread):
    model = make("simsiam", per_view_bn=True, heads=_search_heads("simsiam"))
    params = dict(model.named_parameters())
    assert_matches_reference(model, separate=True, call=lambda m, a, b: functional_call(m, params, (a, b)))
