"""Precise BatchNorm: running statistics become the exact average over the given batches."""

import pytest
import torch
from torch import nn

from selfnas.models.precise_bn import batchnorms, recompute_batchnorm


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(1), nn.Linear(48, 4),
                         nn.BatchNorm1d(4, momentum=0.3))  # fmt: skip


def test_the_statistics_are_the_average_of_the_batch_statistics():
    net = _net()
    batches = [torch.randn(8, 2, 6, 6) * 3 + 1 for _ in range(5)]
    net(batches[0])
    net.eval()
    weights = {
        k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k
    }
    assert recompute_batchnorm(net, batches) == 5
    conv, bn = net[0], net[1]
    with torch.no_grad():
        inputs = [conv(b).transpose(0, 1).flatten(1) for b in batches]  # C x (B H W) each
    assert torch.allclose(bn.running_mean, torch.stack([x.mean(1) for x in inputs]).mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, torch.stack([x.var(1) for x in inputs]).mean(0), atol=1e-5)
    assert int(bn.num_batches_tracked) == 5
    # weights, momenta and the eval flag are untouched
    assert all(torch.equal(net.state_dict()[k], v) for k, v in weights.items())
    assert bn.momentum == 0.1 and net[5].momentum == 0.3
    assert not any(m.training for m in net.modules())


def test_the_old_statistics_leave_no_trace():
    net, other = _net(), _net()
    batches = [torch.randn(4, 2, 6, 6) for _ in range(3)]
    for _ in range(10):  # different histories of running statistics
        net(torch.randn(4, 2, 6, 6) * 5)
    other(batches[0])
    recompute_batchnorm(net, batches)
    recompute_batchnorm(other, batches)
    for a, b in zip(batchnorms(net), batchnorms(other), strict=True):
        assert torch.allclose(a.running_mean, b.running_mean) and torch.allclose(a.running_var, b.running_var)


@pytest.mark.parametrize("batches", [[], [torch.randn(1, 2, 6, 6)]])
def test_without_a_usable_batch_nothing_changes(batches):
    net = _net()
    net(torch.randn(4, 2, 6, 6))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert recompute_batchnorm(net, batches) == 0
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())


def test_a_forward_function_and_the_training_flag_are_honoured():
    net = _net()
    net(torch.randn(4, 2, 6, 6))
    net.train()
    calls = []

    def forward(x):
        calls.append(net[1].training)
        return net(x * 0)

    recompute_batchnorm(net, [torch.randn(4, 2, 6, 6)], forward=forward)
    assert calls == [True] and net.training
    assert torch.allclose(net[1].running_var, torch.zeros(3))  # the forward saw zeros
