"""Batched two-view SSL augmentation of whole uint8 batches (airbench style: no per-sample Python).

Per view, every random number comes from one ``torch.rand(B, 32)`` call on the caller's generator.
The derived per-sample parameters (crop affine, jitter factors, 3 x 3 colour matrices, blur kernels,
thresholds) are packed and moved to the images' device in one transfer. Whether an op applies to a
sample is folded into its parameters with ``torch.where`` (an unselected sample gets the identity:
factor 1, identity matrix, delta kernel, threshold above 1), so every op is one batched pass with no
blend and no indexing. The pipeline, in float32 in [0, 1]:

1. random resized crop + horizontal flip: one affine ``theta`` (B x 2 x 3) per sample and a single
   bilinear ``grid_sample`` (no antialiasing when shrinking large crops). The sampling grid equals
   ``F.affine_grid``'s but is built by broadcasting, which is much faster on CPU;
2. colour jitter with probability ``jitter_p``: brightness, contrast, saturation, hue in this FIXED
   order (torchvision shuffles the order per call; we do not), clamped after each. Hue is a YIQ
   rotation, a linear stand-in for torchvision's HSV shift;
3. grayscale (ITU-R 601 luma) with probability ``grayscale_p``, as a per-sample 3 x 3 matrix;
4. gaussian blur with probability ``blur_p``: separable, per-sample sigma, odd kernel ~10% of the side;
5. solarize with probability ``solarize_p``: x -> 1 - x where x >= 0.5.

Saturation, hue and grayscale need colour and are skipped on 1-channel images. Ops whose
probability or strength is 0 in the config are skipped for the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from selfnas.errors import ConfigError
from selfnas.methods import METHOD_NAMES, METHOD_RECORDS, MethodRecord

#: image sides with a preset; other sides use the nearest
PRESET_SIZES = (28, 32, 96, 224)

_CROP_TRIES = 10  # RandomResizedCrop draws before clamping
_CROP_COLS = 2 * _CROP_TRIES + 3  # uniforms per sample for crop + flip: areas, ratios, left, top, flip
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of one view. Probabilities are per sample; strengths follow torchvision.

    brightness / contrast / saturation ``s`` draw a factor in [max(0, 1 - s), 1 + s];
    hue ``h`` draws a shift in [-h, h] of a full turn (h <= 0.5).
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        for name in ("crop_ratio", "blur_sigma"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"{name} must satisfy 0 < min <= max, got {getattr(self, name)}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ConfigError(f"hue must be in [0, 0.5], got {self.hue}")


def augment_preset(
    method: MethodRecord | str, image_size: int, channels: int
) -> tuple[AugmentConfig, AugmentConfig]:
    """The (view 1, view 2) configs of ``method`` (its record, or its name) for square ``image_size``
    images.

    The side snaps to the nearest of :data:`PRESET_SIZES` (ties go to the smaller). At 28 and 32 px
    blur is off (SimCLR CIFAR practice) and crops use scale (0.2, 1); BYOL keeps its asymmetric
    solarize there. With one channel there is no saturation, hue or grayscale; brightness and
    contrast still apply.
    """
    if not isinstance(method, MethodRecord) and method not in METHOD_RECORDS:
        raise ConfigError(f"unknown augmentation method {method!r}; choose one of: {', '.join(METHOD_NAMES)}")
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    small = min(PRESET_SIZES, key=lambda size: (abs(size - image_size), size)) <= 32
    preset = (method if isinstance(method, MethodRecord) else METHOD_RECORDS[method]).augment
    brightness, contrast, saturation, hue = preset.jitter_small if small else preset.jitter
    colour = channels == 3
    base = AugmentConfig(
        crop_scale=(0.2 if small else preset.crop_min, 1.0),
        brightness=brightness,
        contrast=contrast,
        saturation=saturation if colour else 0.0,
        hue=hue if colour else 0.0,
        grayscale_p=0.2 if colour else 0.0,
    )
    view1, view2 = (
        replace(base, blur_p=0.0 if small else blur_p, solarize_p=solarize_p)
        for blur_p, solarize_p in zip(preset.blur_p, preset.solarize_p, strict=True)
    )
    return view1, view2


def blur_kernel_size(side: int) -> int:
    """Odd gaussian kernel width, ~10% of the image side, at least 3 (23 at 224 px, 3 at 32 px)."""
    return max(3, int(0.1 * side) | 1)


def _colour_basis() -> torch.Tensor:
    """5 x 3 x 3 RGB-space matrices: identity, grayscale (luma in every row) and L, C, T with
    ``hue(a) = L + cos(a) C + sin(a) T``, a YIQ rotation by ``a`` that shifts hues the way
    torchvision's ``adjust_hue`` does for positive ``a``.
    """
    yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
        dtype=torch.float64,
    )
    rgb = torch.linalg.inv(yiq)
    turn = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    hue = [rgb[:, :1] @ yiq[:1], rgb[:, 1:] @ yiq[1:], rgb[:, 1:] @ turn @ yiq[1:]]
    return torch.stack([torch.eye(3, dtype=torch.float64), yiq[:1].expand(3, 3), *hue]).float()


_COLOUR_BASIS = _colour_basis()


@dataclass(frozen=True)
class _Params:
    """Per-sample parameters of one view; unselected samples hold the identity of each op."""

    theta: torch.Tensor  # B x 2 x 3, crop + flip affine (affine_grid convention)
    factors: torch.Tensor  # B x 2, brightness and contrast (1 = identity)
    saturation: torch.Tensor  # B x 3 x 3, RGB -> RGB
    hue: torch.Tensor  # B x 3 x 3, RGB -> RGB
    gray: torch.Tensor  # B x 3 x 3, RGB -> RGB (luma in every row, or the identity)
    kernel: torch.Tensor  # B x k, normalized gaussian (delta = identity)
    solarize: torch.Tensor  # B, threshold (2.0 = identity)

    def to(self, device: torch.device) -> _Params:
        """All tensors on ``device`` with one transfer."""
        parts = [getattr(self, f.name) for f in fields(self)]
        if parts[0].device == device:
            return self
        flat = torch.cat([p.reshape(p.shape[0], -1) for p in parts], dim=1).to(device)
        moved = flat.split([math.prod(p.shape[1:]) for p in parts], dim=1)
        return _Params(*(m.reshape(p.shape) for m, p in zip(moved, parts, strict=True)))


def _uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _crop_theta(config: AugmentConfig, u: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """RandomResizedCrop + flip as an affine map: ``u`` B x _CROP_COLS uniforms -> theta B x 2 x 3.

    Like torchvision: area scale uniform, aspect ratio log-uniform, the first of ``_CROP_TRIES`` draws
    that fits; if none fits, the first draw is clamped to the image. Positions are continuous.
    """
    area = height * width * _uniform(u[:, :_CROP_TRIES], config.crop_scale)
    log_ratio = (math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1]))
    ratio = torch.exp(_uniform(u[:, _CROP_TRIES : 2 * _CROP_TRIES], log_ratio))
    w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    first = ((w <= width) & (h <= height)).int().argmax(dim=1, keepdim=True)
    w = w.gather(1, first).squeeze(1).clamp(max=width)
    h = h.gather(1, first).squeeze(1).clamp(max=height)
    left, top, flip = u[:, 2 * _CROP_TRIES :].unbind(1)
    left, top = left * (width - w), top * (height - h)
    sign = torch.where(flip < config.flip_p, -1.0, 1.0)
    zero = torch.zeros_like(w)
    row_x = torch.stack([sign * w / width, zero, (2 * left + w) / width - 1], dim=1)
    row_y = torch.stack([zero, h / height, (2 * top + h) / height - 1], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def _crop_grid(theta: torch.Tensor, side: int) -> torch.Tensor:
    """``F.affine_grid(theta, [B, C, side, side], align_corners=False)`` for axis-aligned ``theta``.

    B x 2 x 3 -> B x side x side x 2, by broadcasting one row and one column of coordinates.
    """
    base = torch.arange(side, device=theta.device, dtype=theta.dtype).mul_(2 / side).add_(1 / side - 1)
    gx = theta[:, 0, 0, None] * base + theta[:, 0, 2, None]  # B x side, along the width
    gy = theta[:, 1, 1, None] * base + theta[:, 1, 2, None]  # B x side, along the height
    return torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)


def _sample(
    config: AugmentConfig,
    batch: int,
    height: int,
    width: int,
    side: int,
    generator: torch.Generator,
    part: tuple[int, int] | None = None,
) -> _Params:
    """One view's parameters (output side ``side``), drawn on the generator's device.

    With ``part = (index, count)`` the numbers are drawn for ``count * batch`` samples and rows
    ``index * batch ...`` are kept: part ``index`` of what one call on the whole batch draws.
    """
    if part is None:
        u = torch.rand(batch, _CROP_COLS + 9, generator=generator, device=generator.device)
    else:
        index, count = part
        u = torch.rand(count * batch, _CROP_COLS + 9, generator=generator, device=generator.device)
        u = u[index * batch : (index + 1) * batch]
    theta = _crop_theta(config, u[:, :_CROP_COLS], height, width)
    jitter, b, c, s, h, gray, blur, sigma, solarize = u[:, _CROP_COLS:].unbind(1)
    jitter = jitter < config.jitter_p
    factors = torch.stack([_factor(b, config.brightness), _factor(c, config.contrast)], dim=1)
    sat = torch.where(jitter, _factor(s, config.saturation), 1.0)[:, None, None]
    angle = (2 * math.pi * config.hue * (2 * h - 1))[:, None, None]
    eye, luma, basis_l, basis_c, basis_t = _COLOUR_BASIS.to(u.device)
    rotation = basis_l + angle.cos() * basis_c + angle.sin() * basis_t
    radius = blur_kernel_size(side) // 2
    offsets = torch.arange(-radius, radius + 1, device=u.device, dtype=u.dtype)
    sigma = _uniform(sigma, config.blur_sigma)[:, None]
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    delta = (offsets == 0).to(u.dtype)
    return _Params(
        theta=theta,
        factors=torch.where(jitter[:, None], factors, 1.0),
        saturation=sat * eye + (1 - sat) * luma,
        hue=torch.where(jitter[:, None, None], rotation, eye),
        gray=torch.where((gray < config.grayscale_p)[:, None, None], luma, eye),
        kernel=torch.where((blur < config.blur_p)[:, None], kernel, delta),
        solarize=torch.where(solarize < config.solarize_p, 0.5, 2.0),
    )


def _factor(u: torch.Tensor, strength: float) -> torch.Tensor:
    """torchvision jitter factor: uniform in [max(0, 1 - strength), 1 + strength]."""
    return _uniform(u, (max(0.0, 1 - strength), 1 + strength))


def _mix(matrix: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per-sample colour matrix B x 3 x 3 applied to ``x`` B x 3 x H x W, clamped, written to ``out``."""
    b, c, h, w = x.shape
    torch.bmm(matrix, x.view(b, c, h * w), out=out.view(b, c, h * w))
    return out.clamp_(0, 1)


def _jitter(
    config: AugmentConfig, x: torch.Tensor, spare: torch.Tensor, p: _Params
) -> tuple[torch.Tensor, torch.Tensor]:
    """Brightness, contrast, saturation, hue (fixed order), clamped after each.

    Works in place in ``x`` and the same-shaped ``spare``; returns (result, the other buffer).
    """
    bright, contrast = p.factors[:, :, None, None, None].unbind(1)  # each B x 1 x 1 x 1
    colour = x.shape[1] == 3
    if config.brightness > 0:
        x.mul_(bright).clamp_(0, 1)
    if config.contrast > 0:
        means = x.mean(dim=(2, 3))  # B x C
        if colour:
            means = _LUMA[0] * means[:, 0] + _LUMA[1] * means[:, 1] + _LUMA[2] * means[:, 2]
        x.mul_(contrast).add_((1 - contrast) * means.view(-1, 1, 1, 1)).clamp_(0, 1)
    if colour and config.saturation > 0:
        x, spare = _mix(p.saturation, x, spare), x
    if colour and config.hue > 0:
        x, spare = _mix(p.hue, x, spare), x
    return x, spare


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable per-sample filter (reflect padding): B x C x H x W, kernel B x k -> B x C x H x W.

    The batch is folded into channels (1 x BC x H x W) so that two grouped convolutions with 1 x k
    and k x 1 kernels and BC groups apply sample i's kernel to its own channels only. (Grouped
    ``conv1d`` would need two transposes and runs ~3x slower on CPU.)
    """
    b, c, h, w = x.shape
    pad = kernel.shape[1] // 2
    weight = kernel.repeat_interleave(c, dim=0)[:, None, None, :]  # BC x 1 x 1 x k
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, weight, groups=b * c)  # along the width
    y = F.conv2d(y, weight.transpose(2, 3), groups=b * c)  # along the height
    return y.reshape(b, c, h, w).clamp_(0, 1)


def apply(
    config: AugmentConfig,
    images: torch.Tensor,
    generator: torch.Generator,
    out_size: int | None = None,
    part: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Augment one view: float32 B x C x H x W in [0, 1] -> a new float32 B x C x S x S in [0, 1].

    ``S`` is ``out_size`` or the input width. Random numbers come only from ``generator``, which may
    live on the CPU while ``images`` are on an accelerator.
    """
    b, c, h, w = images.shape
    side = out_size or w
    p = _sample(config, b, h, w, side, generator, part).to(images.device)
    grid = _crop_grid(p.theta, side)
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    spare = torch.empty_like(x)  # ops ping-pong between x and spare instead of allocating (CPU page faults)
    if config.jitter_p > 0:
        x, spare = _jitter(config, x, spare, p)
    if c == 3 and config.grayscale_p > 0:
        x, spare = _mix(p.gray, x, spare), x
    if config.blur_p > 0:
        x = _blur(x, p.kernel)
    if config.solarize_p > 0:
        inverted = torch.neg(x, out=spare).add_(1)
        x = torch.where(x >= p.solarize[:, None, None, None], inverted, x, out=x)
    return x


class TwoViewAugment:
    """Two independently augmented, normalized views of a uint8 batch.

    ``mean`` / ``std`` are per channel in [0, 1] units; ``out_size`` resizes (default: keep the side).
    """

    def __init__(
        self,
        view1: AugmentConfig,
        view2: AugmentConfig,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        out_size: int | None = None,
    ) -> None:
        if len(mean) != len(std) or len(mean) not in (1, 3):
            raise ConfigError(f"mean and std need 1 or 3 entries each, got {len(mean)} and {len(std)}")
        if min(std) <= 0:
            raise ConfigError(f"std must be positive, got {std}")
        if out_size is not None and out_size < 1:
            raise ConfigError(f"out_size must be positive, got {out_size}")
        self.view1, self.view2, self.out_size = view1, view2, out_size
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, part: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 B x C x H x W -> two float32 B x C x S x S views, on the images' device.

        ``part = (index, count)``: ``images`` are slice ``index`` of ``count`` equal slices of a
        batch, and the views equal that slice of the views of the whole batch (what one process of
        several draws; see :mod:`selfnas.distributed`).
        """
        x = self._to_float(images)
        return (
            self._normalize(apply(self.view1, x, generator, self.out_size, part)),
            self._normalize(apply(self.view2, x, generator, self.out_size, part)),
        )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Evaluation input, no augmentation: uint8 B x C x H x W -> float32 B x C x S x S.

        Resizes (bilinear, antialiased) only when ``out_size`` differs from the image side.
        """
        x = self._to_float(images)
        if self.out_size is not None and tuple(x.shape[-2:]) != (self.out_size, self.out_size):
            x = F.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear", antialias=True)
        return self._normalize(x)

    def _to_float(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 BxCxHxW, got {images.dtype} {tuple(images.shape)}")
        if images.shape[1] != self._mean.shape[1]:
            raise ValueError(f"images have {images.shape[1]} channels, mean/std have {self._mean.shape[1]}")
        return images.float().div_(255)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """In place on ``x`` (always a fresh tensor here)."""
        if self._mean.device != x.device:
            self._mean, self._std = self._mean.to(x.device), self._std.to(x.device)
        return x.sub_(self._mean).div_(self._std)
