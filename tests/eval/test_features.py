"""Feature extraction: shapes, eval mode without side effects, batch-size independence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfnas.eval.features import extract_features

MEAN = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
STD = torch.tensor([0.25, 0.2, 0.3]).view(1, 3, 1, 1)


def normalize(batch: torch.Tensor) -> torch.Tensor:
    assert batch.dtype == torch.uint8
    return (batch.float() / 255 - MEAN) / STD


def tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def images(n: int = 10) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_shape_dtype_device_and_autograd_friendliness() -> None:
    feats = extract_features(tiny_net(), images(), normalize, batch_size=4)
    assert feats.shape == (10, 6) and feats.dtype == torch.float32 and feats.device.type == "cpu"
    assert not feats.is_inference()  # usable by code that records autograd (e.g. a linear probe)


def test_runs_in_eval_mode_without_side_effects() -> None:
    net = tiny_net().train()
    net[3].eval()  # mixed modes must be restored exactly, not flattened to net.train()
    stats_before = net[1].running_mean.clone()
    first = extract_features(net, images(), normalize)
    second = extract_features(net, images(), normalize)
    torch.testing.assert_close(first, second, rtol=0.0, atol=0.0)  # dropout off, BN uses running stats
    assert torch.equal(net[1].running_mean, stats_before)
    assert [m.training for m in net] == [True, True, True, False, True, True]


def test_mode_is_restored_when_the_backbone_fails() -> None:
    net = tiny_net().train()

    def broken(batch: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        extract_features(net, images(), broken)
    assert all(m.training for m in net.modules())


def test_batch_size_does_not_change_features() -> None:
    net = tiny_net()
    small = extract_features(net, images(), normalize, batch_size=3)
    large = extract_features(net, images(), normalize, batch_size=1000)
    torch.testing.assert_close(small, large, rtol=1e-6, atol=1e-6)


def test_bf16_features_on_the_cpu_are_float32_close_to_fp32() -> None:
    net = tiny_net()
    plain = extract_features(net, images(), normalize)
    seen = []
    net[0].register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    bf16 = extract_features(net, images(), normalize, precision="bf16")
    assert seen == [torch.bfloat16]  # the convolution ran under autocast, on the CPU
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(plain, bf16, rtol=0.05, atol=0.05)
    assert not torch.equal(plain, bf16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_returns_float32_on_cpu() -> None:
    net = tiny_net().cuda()
    mean, std = MEAN.cuda(), STD.cuda()
    feats = extract_features(
        net, images(), lambda x: (x.float() / 255 - mean) / std, device="cuda", precision="bf16"
    )
    reference = extract_features(tiny_net(), images(), normalize)
    assert feats.dtype == torch.float32 and feats.device.type == "cpu"
    torch.testing.assert_close(feats, reference, rtol=0.05, atol=0.05)


def test_bad_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="uint8"):
        extract_features(tiny_net(), images().float(), normalize)
    with pytest.raises(ValueError, match="empty"):
        extract_features(tiny_net(), images(0), normalize)
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(tiny_net(), images(), normalize, batch_size=0)
