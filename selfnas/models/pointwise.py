"""A strided 1x1 convolution computed as a subsample then a 1x1 convolution.

``Conv2d(c_in, c_out, 1, stride=s)`` reads the pixels (0, s, 2s, ...) of each row and column, so it
equals ``Conv2d(c_in, c_out, 1)`` on ``x[:, :, ::s, ::s]``. The second form is used because oneDNN's
weight gradient of the first corrupts the heap on some CPUs (seen with torch 2.14.1 on an AMD EPYC
without AVX-512: channels_last input, 4 -> 8 or fewer channels, ``double free or corruption``), which
killed small ResNet shortcuts and DARTS factorized reductions. Other inputs take the plain strided
kernel, so contiguous CPU and CUDA results stay those of ``Conv2d``. The module is that ``Conv2d``
(same parameters, names and ``stride``), so saved weights load either way.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class StridedPointwiseConv(nn.Conv2d):
    """``Conv2d(c_in, c_out, 1, stride=step)`` (no padding) with the same weights and outputs; a
    channels_last input on the CPU (the case that crashed) goes through the subsample."""

    def __init__(self, c_in: int, c_out: int, step: int, bias: bool = False) -> None:
        super().__init__(c_in, c_out, 1, stride=step, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x C_in x H x W -> N x C_out x H/s x W/s (ceil)
        step = self.stride[0]
        if step == 1 or x.is_cuda or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        return F.conv2d(x[:, :, ::step, ::step], self.weight, self.bias)
