"""The op table of MLP heads: name -> constructor ``(in_dim, out_dim) -> nn.Module``.

Every op maps ``N x in_dim`` to ``N x out_dim``. Parameter-free ops (identity,
1-D pooling over the feature axis) keep the width, so they need ``in_dim == out_dim``.
The same table feeds the hand-crafted heads here and the searched heads (NASiam),
where a mixed op holds one instance of each candidate.

NASiam's own pools (``*_pool_3_bn``, used by ``search.layout=nasiam``) differ from ours in
three ways, as NASiam's code builds them: a BatchNorm1d (affine) follows the pool, the average counts the
zero padding at the two edge features (``nn.AvgPool1d``'s default), and at a layer that
changes the width NASiam's op wrapper puts a Linear before the pool (Linear-BN-ReLU when
narrowing, a bare Linear when widening), so these two ops accept ``in_dim != out_dim``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from selfnas.errors import GenotypeError
from selfnas.registry import Registry

HeadOpFactory = Callable[[int, int], nn.Module]
HEAD_OPS: Registry[HeadOpFactory] = Registry("head op")

#: ops chosen for no weight matrix: the collapse monitor and ``search.max_parameter_free`` count
#: these. NASiam's pools keep only their BatchNorm's per-feature scale and shift (at a layer that
#: changes the width, NASiam's wrapper Linear too), and still count: DARTS collapse is toward them.
PARAMETER_FREE_HEAD_OPS = frozenset(
    {"identity", "max_pool_3", "avg_pool_3", "max_pool_3_bn", "avg_pool_3_bn"}
)


class FeaturePool1d(nn.Module):
    """Max or average pooling of width 3 along the feature axis, stride 1, same width.

    ``include_pad``: the average divides the two edge features by 3 (the zero padding counts),
    as ``nn.AvgPool1d`` does by default in NASiam's code; ours divides by the real neighbours.
    """

    def __init__(self, kind: str, include_pad: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.include_pad = include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x D -> N x D
        y = x.unsqueeze(1)  # N x 1 x D
        if self.kind == "max":
            y = F.max_pool1d(y, kernel_size=3, stride=1, padding=1)
        else:
            y = F.avg_pool1d(y, kernel_size=3, stride=1, padding=1, count_include_pad=self.include_pad)
        return y.squeeze(1)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, kernel=3" + (", include_pad=True" if self.include_pad else "")


def _same_width(name: str, in_dim: int, out_dim: int) -> None:
    if in_dim != out_dim:
        raise GenotypeError(
            f"head op {name!r} keeps the width but was asked to map {in_dim} -> {out_dim}; "
            "give it the same dim as the layer before"
        )


def _identity(in_dim: int, out_dim: int) -> nn.Module:
    _same_width("identity", in_dim, out_dim)
    return nn.Identity()


def _pool(kind: str) -> HeadOpFactory:
    def make(in_dim: int, out_dim: int) -> nn.Module:
        _same_width(f"{kind}_pool_3", in_dim, out_dim)
        return FeaturePool1d(kind)

    return make


def _nasiam_pool(kind: str) -> HeadOpFactory:
    """NASiam's pool: pool -> BatchNorm1d, after NASiam's width-changing Linear when in != out."""

    def make(in_dim: int, out_dim: int) -> nn.Module:
        layers: list[nn.Module] = []
        if in_dim > out_dim:
            layers += list(_linear_bn(nn.ReLU)(in_dim, out_dim))
        elif in_dim < out_dim:
            layers.append(nn.Linear(in_dim, out_dim))
        layers += [FeaturePool1d(kind, include_pad=True), nn.BatchNorm1d(out_dim)]
        return nn.Sequential(*layers)

    return make


def _linear_bn(act: type[nn.Module] | None, affine: bool = True, bias: bool = False) -> HeadOpFactory:
    def make(in_dim: int, out_dim: int) -> nn.Module:
        layers: list[nn.Module] = [
            nn.Linear(in_dim, out_dim, bias=bias),
            nn.BatchNorm1d(out_dim, affine=affine),
        ]
        if act is not None:
            layers.append(act(inplace=True) if act in (nn.ReLU, nn.SiLU, nn.Hardswish, nn.ELU) else act())
        return nn.Sequential(*layers)

    return make


def _linear(act: type[nn.Module] | None) -> HeadOpFactory:
    def make(in_dim: int, out_dim: int) -> nn.Module:
        if act is None:
            return nn.Linear(in_dim, out_dim)
        return nn.Sequential(nn.Linear(in_dim, out_dim), act(inplace=True))

    return make


HEAD_OPS.add("identity", _identity, "identity (keeps the width)")
HEAD_OPS.add("max_pool_3", _pool("max"), "1-D max pool of width 3 over features (keeps the width)")
HEAD_OPS.add("avg_pool_3", _pool("avg"), "1-D average pool of width 3 over features (keeps the width)")
HEAD_OPS.add("max_pool_3_bn", _nasiam_pool("max"), "NASiam's max pool: 1-D max pool of width 3 -> BatchNorm")
HEAD_OPS.add("avg_pool_3_bn", _nasiam_pool("avg"), "NASiam's average pool (zero padding counts) -> BatchNorm")
HEAD_OPS.add("linear", _linear(None), "Linear with bias")
HEAD_OPS.add("linear_relu", _linear(nn.ReLU), "Linear -> ReLU (MoCo v2 head)")
HEAD_OPS.add("linear_bn", _linear_bn(None), "Linear -> BatchNorm")
HEAD_OPS.add("linear_bn_noaffine", _linear_bn(None, affine=False), "Linear -> BatchNorm without affine")
HEAD_OPS.add("linear_bn_relu", _linear_bn(nn.ReLU), "Linear -> BatchNorm -> ReLU")
HEAD_OPS.add("linear_bn_silu", _linear_bn(nn.SiLU), "Linear -> BatchNorm -> SiLU")
HEAD_OPS.add("linear_bn_hardswish", _linear_bn(nn.Hardswish), "Linear -> BatchNorm -> Hardswish")
HEAD_OPS.add("linear_bn_elu", _linear_bn(nn.ELU), "Linear -> BatchNorm -> ELU")
HEAD_OPS.add("linear_bn_mish", _linear_bn(nn.Mish), "Linear -> BatchNorm -> Mish")


def make_head_op(name: str, in_dim: int, out_dim: int) -> nn.Module:
    """Build one op by name; an unknown name is a :class:`GenotypeError`."""
    if name not in HEAD_OPS:
        raise GenotypeError(f"unknown head op {name!r}; known ops: {', '.join(HEAD_OPS.names())}")
    return HEAD_OPS.get(name)(in_dim, out_dim)
