"""Batched two-view augmentation: shapes, determinism, identities, ranges, presets."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from selfnas.data.augment import (
    PRESET_SIZES,
    AugmentConfig,
    TwoViewAugment,
    _crop_grid,
    _sample,
    apply,
    augment_preset,
    blur_kernel_size,
)
from selfnas.errors import ConfigError
from selfnas.methods import METHOD_NAMES

#: every op off and the crop is the whole image: the identity
OFF = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
STRONG = AugmentConfig(
    crop_scale=(0.08, 1.0),
    flip_p=0.5,
    jitter_p=1.0,
    brightness=0.8,
    contrast=0.8,
    saturation=0.8,
    hue=0.5,
    grayscale_p=0.5,
    blur_p=1.0,
    solarize_p=0.5,
)


def _images(batch: int = 8, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, size, size), generator=gen, dtype=torch.uint8)


def _augment(
    view1: AugmentConfig, view2: AugmentConfig | None = None, channels: int = 3, **kw
) -> TwoViewAugment:
    return TwoViewAugment(view1, view2 or view1, (0.5,) * channels, (0.25,) * channels, **kw)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels,size", list(itertools.product((1, 3), (28, 32, 96))))
def test_shapes_and_dtypes(channels: int, size: int) -> None:
    aug = _augment(*augment_preset("byol", size, channels), channels=channels)
    views = aug(_images(4, channels, size), _gen())
    for view in views:
        assert view.shape == (4, channels, size, size) and view.dtype == torch.float32
        assert torch.isfinite(view).all()


def test_out_size_resizes_views_and_eval_input() -> None:
    aug = _augment(*augment_preset("simclr", 28, 1), channels=1, out_size=32)
    images = _images(3, 1, 28)
    assert all(v.shape == (3, 1, 32, 32) for v in aug(images, _gen()))
    assert aug.normalize(images).shape == (3, 1, 32, 32)


def test_same_seed_same_views_other_seed_other_views() -> None:
    aug = _augment(STRONG)
    images = _images()
    first, second, other = aug(images, _gen(1)), aug(images, _gen(1)), aug(images, _gen(2))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.allclose(first[0], other[0])


def test_two_views_differ() -> None:
    view1, view2 = _augment(*augment_preset("simsiam", 32, 3))(_images(), _gen())
    assert (view1 - view2).abs().amax(dim=(1, 2, 3)).min() > 1e-3


def test_samples_in_a_batch_get_different_crops() -> None:
    crop_only = replace(OFF, crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3))
    images = _images(1).expand(16, -1, -1, -1)
    view, _ = _augment(crop_only)(images, _gen())
    assert not torch.allclose(view[0], view[1])
    assert len({tuple(v.flatten()[:50].tolist()) for v in view}) == 16


def test_identity_config_equals_normalize() -> None:
    aug = _augment(OFF)
    images = _images()
    view1, view2 = aug(images, _gen())
    torch.testing.assert_close(view1, aug.normalize(images), atol=1e-5, rtol=0)
    torch.testing.assert_close(view2, aug.normalize(images), atol=1e-5, rtol=0)


def test_flip_only_equals_torch_flip() -> None:
    x = _images(channels=1, size=28).float() / 255
    out = apply(replace(OFF, flip_p=1.0), x, _gen())
    torch.testing.assert_close(out, torch.flip(x, dims=[-1]), atol=1e-5, rtol=0)


def test_grayscale_output_has_equal_channels_of_luma() -> None:
    x = _images().float() / 255
    out = apply(replace(OFF, grayscale_p=1.0), x, _gen())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(out[:, 0], luma, atol=1e-5, rtol=0)


def test_solarize_inverts_bright_pixels() -> None:
    x = _images().float() / 255
    torch.testing.assert_close(
        apply(replace(OFF, solarize_p=1.0), x, _gen()), torch.where(x >= 0.5, 1 - x, x), atol=1e-5, rtol=0
    )


def test_jitter_hits_about_its_probability_and_leaves_the_rest_exactly_untouched() -> None:
    config = replace(OFF, jitter_p=0.5)
    x = _images(400).float() / 255
    selected = _sample(config, 400, 32, 32, 32, _gen()).factors[:, 0] != 1
    out = apply(config, x, _gen())
    assert 0.4 < selected.float().mean() < 0.6
    assert torch.equal(out[~selected], x[~selected])
    assert (out[selected] != x[selected]).flatten(1).any(dim=1).all()


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (3, 96)])
def test_unnormalized_pipeline_stays_in_unit_range(channels: int, size: int) -> None:
    out = apply(STRONG, _images(8, channels, size).float() / 255, _gen(3))
    assert out.shape == (8, channels, size, size) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_blur_smooths_and_keeps_constant_images() -> None:
    config = replace(OFF, blur_p=1.0)
    flat = torch.full((2, 3, 96, 96), 0.25)
    torch.testing.assert_close(apply(config, flat, _gen()), flat)
    noise = _images(4, 3, 96).float() / 255
    assert apply(config, noise, _gen()).std() < noise.std()


def test_batch_of_one() -> None:
    view1, view2 = _augment(STRONG)(_images(1), _gen())
    assert view1.shape == view2.shape == (1, 3, 32, 32)


def test_crop_grid_matches_affine_grid_and_stays_inside() -> None:
    params = _sample(STRONG, 64, 32, 32, 24, _gen())
    grid = _crop_grid(params.theta, 24)
    torch.testing.assert_close(grid, F.affine_grid(params.theta, [64, 3, 24, 24], align_corners=False))
    scale, shift = params.theta[:, [0, 1], [0, 1]].abs(), params.theta[:, :, 2].abs()
    assert (scale <= 1 + 1e-6).all() and (scale + shift <= 1 + 1e-5).all()


def test_crop_area_follows_the_scale_range() -> None:
    config = AugmentConfig(crop_scale=(0.3, 0.5), crop_ratio=(1.0, 1.0))
    theta = _sample(config, 256, 32, 32, 32, _gen()).theta
    area = (theta[:, 0, 0] * theta[:, 1, 1]).abs()
    assert area.min() >= 0.3 - 1e-5 and area.max() <= 0.5 + 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_drives_cuda_images_like_cpu() -> None:
    aug, images = _augment(STRONG), _images()
    on_gpu = aug(images.cuda(), _gen(5))
    on_cpu = aug(images, _gen(5))
    for gpu, cpu in zip(on_gpu, on_cpu, strict=True):
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    "method,size,channels", list(itertools.product(METHOD_NAMES, (*PRESET_SIZES, 64, 500), (1, 3)))
)
def test_presets_for_every_method_size_and_channels(method: str, size: int, channels: int) -> None:
    view1, view2 = augment_preset(method, size, channels)
    assert isinstance(view1, AugmentConfig) and isinstance(view2, AugmentConfig)
    for view in (view1, view2):
        assert view.brightness > 0 and view.contrast > 0
        if channels == 1:
            assert view.saturation == view.hue == view.grayscale_p == 0
        if size <= 64:
            assert view.blur_p == 0
    if method == "byol" and size >= 96:
        assert (view1.blur_p, view1.solarize_p, view2.blur_p, view2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    if method != "byol" and size >= 96:
        assert view1 == view2 and view1.blur_p == 0.5


def test_blur_kernel_is_odd_and_about_a_tenth() -> None:
    assert [blur_kernel_size(s) for s in (28, 32, 96, 224)] == [3, 3, 9, 23]


@pytest.mark.parametrize(
    "bad",
    [
        {"crop_scale": (0.0, 1.0)},
        {"crop_scale": (0.5, 0.2)},
        {"crop_ratio": (2.0, 1.0)},
        {"flip_p": 1.5},
        {"brightness": -0.1},
        {"hue": 0.6},
        {"blur_sigma": (0.0, 1.0)},
    ],
)
def test_invalid_configs_raise(bad: dict) -> None:
    with pytest.raises(ConfigError):
        AugmentConfig(**bad)


def test_invalid_preset_and_stats_raise() -> None:
    with pytest.raises(ConfigError, match="choose one of"):
        augment_preset("dino", 32, 3)
    with pytest.raises(ConfigError):
        augment_preset("simclr", 32, 2)
    with pytest.raises(ConfigError):
        TwoViewAugment(OFF, OFF, (0.5, 0.5), (0.25,))
    with pytest.raises(ValueError):
        _augment(OFF)(_images(channels=1), _gen())
