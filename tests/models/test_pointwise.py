"""The strided 1x1 convolution (selfnas.models.pointwise) is the Conv2d it replaces, without the
oneDNN weight-gradient crash of that Conv2d on small channels_last inputs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from selfnas.models.pointwise import StridedPointwiseConv


@pytest.mark.parametrize("size", [15, 16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_it_computes_the_strided_conv_with_the_same_parameters(size, channels_last):
    torch.manual_seed(0)
    ours, ref = StridedPointwiseConv(4, 8, 2), nn.Conv2d(4, 8, 1, stride=2, bias=False)
    ours.load_state_dict(ref.state_dict())  # the same names: saved weights load either way
    x = torch.randn(3, 4, size, size)
    x = (x.to(memory_format=torch.channels_last) if channels_last else x).requires_grad_()
    out, want = ours(x), ref(x)
    assert out.shape == want.shape == (3, 8, (size + 1) // 2, (size + 1) // 2)
    torch.testing.assert_close(out, want)
    out.square().sum().backward()
    grad = x.grad.clone()
    x.grad = None
    want.square().sum().backward()
    torch.testing.assert_close(grad, x.grad)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)


def test_the_shape_that_corrupted_the_heap_trains():
    # in a subprocess: the crash it guards against aborts the interpreter
    code = (
        "import torch\n"
        "from selfnas.models.pointwise import StridedPointwiseConv\n"
        "torch.set_num_threads(1)\n"
        "conv = StridedPointwiseConv(4, 8, 2).to(memory_format=torch.channels_last)\n"
        "for _ in range(30):\n"
        "    x = torch.randn(128, 4, 16, 16).to(memory_format=torch.channels_last).requires_grad_()\n"
        "    conv(x).square().sum().backward()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-500:]
