"""Zero-cost proxies: label-free scores of a network at initialisation, from one minibatch at most.

Each score ranks candidate architectures before any training (higher is better for all of them).
The baselines :func:`param_count` and :func:`flops_per_image` are what a proxy must beat to be
worth its cost (ZiCo, Li et al., ICLR 2023). Every function leaves the network as it found it:
parameters, buffers (BatchNorm running statistics), ``.grad`` and the train/eval flag of every
submodule.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

#: the activations :func:`naswot` hooks (subclasses included, ``inplace=True`` or not): each has
#: ``output > 0`` exactly where ``input > 0`` (for a non-negative LeakyReLU slope), so the code is
#: the unit's on/off pattern. The reference code hooks every module whose type name has "ReLU".
RELU_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.RReLU)


def naswot(backbone: nn.Module, images: torch.Tensor, *, train_mode: bool = True) -> float:
    """NASWOT (Mellor et al., ICML 2021): ``log |det K|`` of the activation-code kernel, higher is better.

    Every call of a :data:`RELU_TYPES` module (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.RReLU) is hooked;
    its output, binarised as ``output > 0`` and flattened per image, is appended to that image's
    binary code ``c``. ``K = c c^T + (1 - c)(1 - c)^T``, i.e. ``K_ij`` = number of units minus the
    Hamming distance between the codes of images i and j (units summed over every hooked call; a
    module called twice counts twice). Returns ``slogdet(K).logabsdet`` in float64, in nats: the
    more distinct the codes, the higher; ``-inf`` when two images share a code (e.g. duplicated
    images), since K is then singular. Functional calls (``F.relu``, ``torch.relu``,
    ``x.relu()``) are not modules and cannot be hooked: their units are left out, and a network
    with no hooked activation raises ``ValueError``.

    images: N x ... float batch (N >= 2), moved to the backbone's device. ``train_mode`` True
    (the reference code's setting) normalises BatchNorm with batch statistics; False uses the
    running ones. Runs without gradients; the train/eval flags and buffers are restored and the
    hooks removed afterwards, even on error (parameters are only read).
    """
    x = _checked_images(images)
    n = x.shape[0]
    hooked = [m for m in backbone.modules() if isinstance(m, RELU_TYPES)]
    if not hooked:
        raise ValueError(
            "naswot: the network has no nn.ReLU / nn.ReLU6 / nn.LeakyReLU / nn.RReLU module to hook "
            "(functional relu calls cannot be hooked)"
        )
    kernel = torch.zeros(n, n, dtype=torch.float64)
    calls = 0

    def hook(module: nn.Module, inputs: object, output: object) -> None:
        nonlocal calls
        if not isinstance(output, torch.Tensor) or output.ndim == 0 or output.shape[0] != n:
            raise ValueError(f"naswot: {type(module).__name__} did not return a batch of {n} activations")
        codes = output.detach().reshape(n, -1) > 0
        if codes.device.type not in ("cpu", "cuda"):  # e.g. MPS has no float64
            codes = codes.cpu()
        signs = codes.to(torch.float64) * 2 - 1  # +-1, so signs @ signs.T = units - 2 * Hamming
        kernel.add_(((signs @ signs.T + signs.shape[1]) / 2).cpu())
        calls += 1

    modes = [(m, m.training) for m in backbone.modules()]
    buffers = _snapshot_buffers(backbone)
    handles = []
    try:
        handles = [m.register_forward_hook(hook) for m in hooked]
        backbone.train(train_mode)
        with torch.no_grad():
            backbone(x.to(_device_of(backbone)))
    finally:
        for handle in handles:
            handle.remove()
        _restore(modes, buffers)
    if calls == 0:
        raise ValueError("naswot: no hooked ReLU module ran in the forward pass")
    return torch.linalg.slogdet(kernel).logabsdet.item()


def synflow(backbone: nn.Module, input_shape: Sequence[int]) -> float:
    """SynFlow (Tanaka et al. 2020; a NAS proxy in Abdelfattah et al., ICLR 2021), as a natural log.

    On a deep copy of ``backbone`` in float64, with every floating-point parameter and buffer
    replaced by its absolute value (as the reference code does to the state dict) and every
    module in eval mode (BatchNorm uses its running statistics), forward an all-ones input of
    shape ``1 x input_shape`` (e.g. C x H x W), take ``R = sum(output)`` and return
    ``log(sum over all parameters of |theta * dR/dtheta|)``. The log keeps the value finite where
    the raw sum overflows easily: ``+inf`` only if even float64 overflows, ``-inf`` if the score
    is 0. Higher is better. A bias-free network of L linear layers scores ``log(L * R)``. The
    original network is not touched.
    """
    shape = _checked_shape(input_shape)
    net = copy.deepcopy(backbone).eval().to(torch.float64)
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            if tensor.is_floating_point():
                tensor.abs_()
    params = list(net.parameters())
    if not params:
        raise ValueError("synflow: the network has no parameters to score")
    for p in params:
        p.grad = None
        p.requires_grad_(True)
    ones = torch.ones((1, *shape), dtype=torch.float64, device=_device_of(net))
    with torch.enable_grad():
        total = net(ones).sum()
        grads = torch.autograd.grad(total, params, allow_unused=True)
    with torch.no_grad():
        pairs = zip(params, grads, strict=True)
        value = float(sum(((p * g).abs().sum() for p, g in pairs if g is not None), 0.0))
    if math.isnan(value):
        raise ValueError("synflow: the score is NaN; float64 overflowed in the forward or backward pass")
    return math.log(value) if value > 0 else -math.inf


def grad_norm(loss_fn: Callable[[], torch.Tensor], module: nn.Module) -> float:
    """Label-free grad-norm (Abdelfattah et al., ICLR 2021): ``||dL/dtheta||_2``, higher is better.

    loss_fn: computes the scalar SSL loss of one minibatch (the caller's views, model and loss),
    e.g. ``lambda: ssl_loss(model(v1), model(v2))``. theta = the trainable parameters of
    ``module`` (gradients of other parameters are ignored; an unused parameter contributes 0).
    The value is the l2 norm of the whole gradient, in loss units per parameter unit (the
    reference code instead sums per-layer norms of Conv/Linear weight gradients). Gradients are
    taken with ``torch.autograd.grad``, so no ``.grad`` is written; ``module``'s buffers (e.g.
    BatchNorm running statistics updated by the forward in ``loss_fn``) are restored afterwards.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("grad_norm: the module has no trainable parameters")
    buffers = _snapshot_buffers(module)
    try:
        with torch.enable_grad():
            loss = loss_fn()
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
                raise ValueError(f"grad_norm: loss_fn must return a scalar float tensor, got {loss!r}")
            if not loss.requires_grad:
                raise ValueError("grad_norm: the loss does not depend on any parameter that requires grad")
            if not torch.isfinite(loss).all():
                raise ValueError(f"grad_norm: the loss is not finite ({loss.item()})")
            grads = torch.autograd.grad(loss.reshape(()), params, allow_unused=True)
    finally:
        _restore([], buffers)
    squares = sum((g.detach().to(torch.float64).square().sum() for g in grads if g is not None), 0.0)
    return math.sqrt(float(squares))


def param_count(module: nn.Module) -> int:
    """Number of trainable parameters (``requires_grad``; a shared tensor counts once). Baseline."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def flops_per_image(backbone: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass of one image of shape ``input_shape`` (e.g. C x H x W). Baseline.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on a 1 x ``input_shape`` zero input in
    eval mode, without gradients: its total, i.e. 2 x the multiply-adds of matmuls and
    convolutions (bias adds, activations, normalisation and pooling are not counted), so
    ``nn.Linear(3, 4)`` costs 2 * 3 * 4 = 24. The train/eval flags are restored afterwards.
    """
    shape = _checked_shape(input_shape)
    floats = [t for t in [*backbone.parameters(), *backbone.buffers()] if t.is_floating_point()]
    dtype = floats[0].dtype if floats else torch.get_default_dtype()
    image = torch.zeros((1, *shape), dtype=dtype, device=_device_of(backbone))
    modes = [(m, m.training) for m in backbone.modules()]
    counter = FlopCounterMode(display=False)
    try:
        backbone.eval()
        with torch.no_grad(), counter:
            backbone(image)
    finally:
        _restore(modes, [])
    return int(counter.get_total_flops())


def _checked_images(images: torch.Tensor) -> torch.Tensor:
    """``images`` after checking it is a finite float batch of N >= 2 items."""
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or not images.is_floating_point():
        raise ValueError(f"images must be an N x ... float tensor, got {getattr(images, 'shape', images)!r}")
    if images.shape[0] < 2:
        raise ValueError(f"images needs at least 2 items to compare codes, got {images.shape[0]}")
    if not torch.isfinite(images).all():
        raise ValueError("images contains NaN or infinite values")
    return images


def _checked_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` (one item, without the batch dim) as a tuple of positive ints."""
    shape = tuple(input_shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f"input_shape must be positive ints, e.g. (C, H, W), got {input_shape!r}")
    return shape


def _device_of(module: nn.Module) -> torch.device:
    """The device of the module's first parameter or buffer (the CPU if it has none)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return torch.device("cpu")


def _snapshot_buffers(module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, copy of its value) for every buffer of ``module``."""
    return [(b, b.detach().clone()) for b in module.buffers()]


def _restore(
    modes: Sequence[tuple[nn.Module, bool]], buffers: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> None:
    """Put back each module's train/eval flag and each buffer's value."""
    for module, training in modes:
        module.training = training
    with torch.no_grad():
        for buffer, value in buffers:
            buffer.copy_(value)
