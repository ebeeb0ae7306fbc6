import pytest
import torch
from torch import nn

from selfnas.errors import ConfigError, RegistryError
from selfnas.methods import method_record
from selfnas.models.heads import default_heads
from selfnas.ssl.registry import METHODS, create_method


class TinyBackbone(nn.Module):
    out_dim = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv(x)).relu().mean(dim=(2, 3))


def make(name: str, **hp):
    spec = method_record(name)
    projector, predictor = default_heads(spec, 16, 12, 6)
    if not spec.needs_predictor:
        predictor = None
    return create_method(spec, TinyBackbone(), projector, predictor, **hp)


@pytest.mark.parametrize("name", METHODS.names())
def test_forward_backward_shapes(name):
    torch.manual_seed(0)
    model = make(name, **({"queue_size": 32} if name == "moco" else {}))
    x1, x2 = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    out = model(x1, x2)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.embedding.shape == (6, 12)
    out.loss.backward()
    assert model.backbone.conv.weight.grad is not None
    model.on_step_end(0.5)


@pytest.mark.parametrize("name", ["moco", "byol"])
def test_momentum_target_moves_toward_online_and_gets_no_grad(name):
    torch.manual_seed(0)
    model = make(name, **({"queue_size": 32} if name == "moco" else {}))
    target = model.key_encoder if name == "moco" else model.target
    before = [p.clone() for p in target.net.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    out = model(torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8))
    out.loss.backward()
    assert all(p.grad is None for p in target.net.parameters())
    opt.step()
    model.on_step_end(0.1)
    moved = any(not torch.equal(a, b) for a, b in zip(before, target.net.parameters(), strict=True))
    assert moved


def test_moco_queue_is_filled_with_keys():
    torch.manual_seed(0)
    model = make("moco", queue_size=20)
    model(torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8))
    model.on_step_end(0.0)
    assert int(model.queue_ptr) == 12
    assert torch.allclose(model.queue[:12].norm(dim=1), torch.ones(12), atol=1e-5)


def test_byol_momentum_ramps_to_one():
    model = make("byol", momentum=0.99)
    assert model.target.momentum(0.0) == pytest.approx(0.99)
    assert model.target.momentum(1.0) == pytest.approx(1.0)


def test_unknown_method_and_bad_hparams():
    with pytest.raises(RegistryError):
        METHODS.get("dino")
    with pytest.raises(ConfigError):
        make("simclr", tau=0.1)
    projector, _ = default_heads(method_record("simsiam"), 16, 12, 6)
    with pytest.raises(ConfigError):
        create_method(method_record("simsiam"), TinyBackbone(), projector, None)
