"""Zero-cost proxies: hand-computed values, and the network left exactly as it was found."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfnas.eval.zero_cost import flops_per_image, grad_norm, naswot, param_count, synflow
from selfnas.models.backbones import create_backbone

# Linear(2, 3) with these weights (no bias) then ReLU: the codes of INPUTS are (1,0,1), (0,1,1),
# (0,0,0). Pairwise Hamming distances are all 2 over 3 units, so K = [[3,1,1],[1,3,1],[1,1,3]],
# det K = 3 * 8 - 1 * 2 + 1 * (-2) = 20.
WEIGHT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
INPUTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
HAND_LOGDET = math.log(20.0)


def _hand_net(activation: nn.Module) -> nn.Sequential:
    linear = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        linear.weight.copy_(WEIGHT)
    return nn.Sequential(linear, activation)


def _small_backbone() -> nn.Module:
    torch.manual_seed(0)
    return create_backbone("resnet_small", in_channels=1, width=8, depths=[1, 1])


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _assert_same_state(module: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key].dtype == value.dtype, key
        assert torch.equal(after[key], value), key


def test_param_count_of_linear_and_frozen_or_shared_parameters() -> None:
    assert param_count(nn.Linear(3, 4)) == 16  # 3 * 4 weights + 4 biases
    frozen = nn.Linear(3, 4)
    frozen.bias.requires_grad_(False)
    assert param_count(frozen) == 12
    shared = nn.Linear(3, 3)
    assert param_count(nn.Sequential(shared, nn.ReLU(), shared)) == 12  # one tensor, counted once


def test_flops_of_linear_and_1x1_conv_by_hand() -> None:
    assert flops_per_image(nn.Linear(3, 4), (3,)) == 2 * 3 * 4  # 12 multiply-adds, bias not counted
    # 1x1 conv, 2 -> 3 channels on 4 x 4: 3 * 2 multiply-adds at each of 16 positions
    assert flops_per_image(nn.Conv2d(2, 3, 1), (2, 4, 4)) == 2 * 3 * 2 * 16


def test_flops_restore_modes_and_run_batchnorm_on_one_image() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.ReLU())
    net[2].eval()  # a mixed state: all but the ReLU train
    before = _state(net)
    # one 1 x 1 image: a training BN would raise (one value per channel), so eval mode is needed
    assert flops_per_image(net, [1, 1, 1]) == 2 * 2 * 1  # BN and ReLU cost nothing here
    assert [m.training for m in net.modules()] == [True, True, True, False]
    _assert_same_state(net, before)
    assert flops_per_image(_small_backbone(), (1, 16, 16)) > 0
    with pytest.raises(ValueError, match="input_shape"):
        flops_per_image(net, (1, 0, 3))


def test_naswot_equals_hand_computed_logdet() -> None:
    assert naswot(_hand_net(nn.ReLU()), INPUTS) == pytest.approx(HAND_LOGDET, rel=1e-12)
    # inplace ReLU, ReLU6 and LeakyReLU give the same on/off codes
    for act in (nn.ReLU(inplace=True), nn.ReLU6(inplace=True), nn.LeakyReLU(0.1)):
        assert naswot(_hand_net(act), INPUTS) == pytest.approx(HAND_LOGDET, rel=1e-12)


def test_naswot_counts_every_call_of_a_shared_relu() -> None:
    relu = nn.ReLU()
    net = _hand_net(relu)
    net.append(relu)  # relu(relu(x)): the same codes twice, so K doubles: det 2^3 * 20
    assert naswot(net, INPUTS) == pytest.approx(HAND_LOGDET + 3 * math.log(2.0), rel=1e-12)


def test_naswot_of_duplicated_inputs_is_minus_infinity() -> None:
    duplicated = torch.cat([INPUTS, INPUTS[:1]])  # two images with the same code: K is singular
    assert naswot(_hand_net(nn.ReLU()), duplicated) == -math.inf
    backbone = _small_backbone()
    images = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    assert math.isfinite(naswot(backbone, images))
    assert naswot(backbone, torch.cat([images, images[:1]])) == -math.inf


@pytest.mark.parametrize("train", [True, False])
def test_naswot_leaves_modes_params_buffers_and_hooks_as_found(train: bool) -> None:
    backbone = _small_backbone().train(train)
    first_bn = next(m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d))
    first_bn.train(not train)  # a mixed state must come back as it was
    modes = [m.training for m in backbone.modules()]
    before = _state(backbone)
    images = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    for train_mode in (True, False):
        assert math.isfinite(naswot(backbone, images, train_mode=train_mode))
    assert [m.training for m in backbone.modules()] == modes
    _assert_same_state(backbone, before)  # BN running statistics included
    assert all(not m._forward_hooks for m in backbone.modules())


def test_naswot_removes_hooks_and_restores_mode_on_error() -> None:
    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.relu = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.relu(x)
            raise RuntimeError("boom")

    net = Failing().eval()
    with pytest.raises(RuntimeError, match="boom"):
        naswot(net, INPUTS)
    assert not net.training and not net.relu.training
    assert not net.relu._forward_hooks


def test_naswot_refuses_functional_relu_and_bad_images() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.linear(x))

    with pytest.raises(ValueError, match="functional relu"):
        naswot(Functional(), INPUTS)
    net = _hand_net(nn.ReLU())
    with pytest.raises(ValueError, match="at least 2"):
        naswot(net, INPUTS[:1])
    with pytest.raises(ValueError, match="NaN"):
        naswot(net, torch.full((2, 2), math.nan))


def test_synflow_of_two_layer_linear_net_equals_hand_value() -> None:
    w1 = torch.tensor([[1.0, -2.0, 0.5], [-0.5, 3.0, 1.0]])  # 3 -> 2
    w2 = torch.tensor([[2.0, -1.0], [0.25, 4.0]])  # 2 -> 2
    net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[1].weight.copy_(w2)
    # R = 1^T |W2| |W1| 1 = (2.25, 5) . (3.5, 4.5) = 30.375; each layer contributes R, so 2R
    r = (torch.ones(2) @ w2.abs() @ w1.abs() @ torch.ones(3)).item()
    assert r == pytest.approx(30.375)
    before = _state(net)
    assert synflow(net, (3,)) == pytest.approx(math.log(2 * r), rel=1e-12)
    _assert_same_state(net, before)  # signs and float32 kept
    assert net.training and all(p.grad is None for p in net.parameters())


def test_synflow_leaves_the_original_backbone_untouched() -> None:
    backbone = _small_backbone()
    before = _state(backbone)
    value = synflow(backbone, (1, 16, 16))
    assert math.isfinite(value)
    _assert_same_state(backbone, before)
    assert all(m.training for m in backbone.modules())
    assert all(p.grad is None and p.dtype == torch.float32 for p in backbone.parameters())


def test_grad_norm_equals_manual_autograd_and_leaves_grads_as_found() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(3))

    def loss_fn() -> torch.Tensor:
        return net(x).square().mean()

    grads = torch.autograd.grad(loss_fn(), list(net.parameters()))
    expected = math.sqrt(sum(g.double().square().sum().item() for g in grads))
    old_grad = torch.full_like(net[0].weight, 7.0)
    net[0].weight.grad = old_grad.clone()  # a stale gradient must survive; the others stay None
    before = _state(net)
    assert grad_norm(loss_fn, net) == pytest.approx(expected, rel=1e-6)
    assert torch.equal(net[0].weight.grad, old_grad)
    assert all(p.grad is None for name, p in net.named_parameters() if name != "0.weight")
    _assert_same_state(net, before)  # BN running statistics restored


def test_grad_norm_of_a_submodule_and_bad_losses() -> None:
    # loss = sum(W x) for Linear(2, 1) without bias: dL/dW = x, norm = ||x||
    linear = nn.Linear(2, 1, bias=False)
    x = torch.tensor([3.0, 4.0])
    assert grad_norm(lambda: linear(x).sum(), linear) == pytest.approx(5.0)
    head = nn.Linear(1, 1)
    assert grad_norm(lambda: head(linear(x)).sum(), linear) == pytest.approx(5.0 * abs(head.weight.item()))
    with pytest.raises(ValueError, match="scalar"):
        grad_norm(lambda: linear(torch.ones(3, 2)), linear)
    with pytest.raises(ValueError, match="does not depend"):
        grad_norm(lambda: torch.tensor(1.0), linear)
