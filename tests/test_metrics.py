"""Tests for carn_mobile.metrics: values on inputs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from carn_mobile.metrics import (
    crop_border,
    evaluate_pair,
    psnr,
    rgb_to_y,
    ssim,
    to_uint8,
)

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --- rgb_to_y ---------------------------------------------------------------------


def test_rgb_to_y_black_white_and_primaries() -> None:
    colours = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    px = np.array([colours], dtype=np.uint8)
    y = rgb_to_y(px)
    assert y.dtype == np.float64 and y.shape == (1, 5)
    expected = [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966]
    np.testing.assert_allclose(y[0], expected, rtol=0, atol=1e-9)


def test_rgb_to_y_mid_colour_is_unrounded() -> None:
    # (100, 150, 200): 16 + (65.481*100 + 128.553*150 + 24.966*200) / 255
    y = rgb_to_y(np.array([[[100, 150, 200]]], dtype=np.uint8))[0, 0]
    assert y == pytest.approx(16 + (6548.1 + 19282.95 + 4993.2) / 255, abs=1e-9)
    assert y == pytest.approx(136.879411765, abs=1e-8)
    # Float input in 0..255 gives the same answer as uint8.
    assert rgb_to_y(np.array([[[100.0, 150.0, 200.0]]]))[0, 0] == pytest.approx(y, abs=1e-12)


def test_rgb_to_y_rejects_non_rgb() -> None:
    with pytest.raises(ValueError):
        rgb_to_y(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        rgb_to_y(np.zeros((4, 4, 4), dtype=np.uint8))


# --- crop_border ------------------------------------------------------------------


def test_crop_border() -> None:
    img = np.arange(8 * 9 * 3).reshape(8, 9, 3)
    assert crop_border(img, 0).shape == (8, 9, 3)
    out = crop_border(img, 2)
    assert out.shape == (4, 5, 3)
    assert np.array_equal(out, img[2:6, 2:7])
    assert crop_border(img[..., 0], 3).shape == (2, 3)
    with pytest.raises(ValueError):
        crop_border(img, 4)
    with pytest.raises(ValueError):
        crop_border(img, -1)


# --- psnr -------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [1, 5, 16])
def test_psnr_of_constant_offset(offset: int) -> None:
    img = np.random.default_rng(3).integers(20, 200, size=(16, 16, 3), dtype=np.uint8)
    shifted = img + np.uint8(offset)
    expected = 20 * math.log10(255 / offset)
    assert psnr(img, shifted, y_channel=False) == pytest.approx(expected, abs=1e-10)
    # Adding d to R, G and B adds d * 219/255 to Y.
    y_offset = offset * 219 / 255
    assert psnr(img, shifted, y_channel=True) == pytest.approx(20 * math.log10(255 / y_offset), abs=1e-9)


def test_psnr_grey_offset_and_data_range() -> None:
    a = np.full((8, 8), 100, dtype=np.uint8)
    b = np.full((8, 8), 110, dtype=np.uint8)
    assert psnr(a, b) == pytest.approx(20 * math.log10(25.5), abs=1e-12)
    unit = psnr(a / 255.0, b / 255.0, data_range=1.0, y_channel=False)
    assert unit == pytest.approx(20 * math.log10(25.5), abs=1e-9)


def test_psnr_identical_is_inf() -> None:
    img = _rgb(10, 10)
    assert psnr(img, img) == float("inf")
    assert psnr(img, img.copy(), y_channel=False) == float("inf")


def test_psnr_crop_ignores_border() -> None:
    a = _rgb(12, 12, seed=4)
    b = a.copy()
    b[0, :] = 255 - b[0, :]
    b[:, -2:] = 0
    assert math.isfinite(psnr(a, b))
    assert psnr(a, b, crop=2) == float("inf")
    # MSE over the cropped area only: a single differing pixel in an 8x8 crop.
    b2 = a.copy()
    b2[5, 5, :] = a[5, 5, :] ^ 0x01  # change each channel by exactly 1
    delta = b2[5, 5].astype(float) - a[5, 5].astype(float)
    mse = float(np.dot(delta, [65.481, 128.553, 24.966]) / 255) ** 2 / 64
    assert psnr(a, b2, crop=2) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)


def test_shape_mismatch_raises_naming_both_shapes() -> None:
    a, b = _rgb(8, 8), _rgb(8, 9)
    for fn in (psnr, ssim):
        with pytest.raises(ValueError, match=r"\(8, 8, 3\).*\(8, 9, 3\)"):
            fn(a, b)


# --- ssim -------------------------------------------------------------------------


def _ssim_bruteforce(a: np.ndarray, b: np.ndarray) -> float:
    """Direct 2-D transcription of the reference formula, window by window."""
    x = np.arange(11) - 5.0
    win = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    win /= win.sum()
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            m1, m2 = (win * pa).sum(), (win * pb).sum()
            v1 = (win * pa * pa).sum() - m1 * m1
            v2 = (win * pb * pb).sum() - m2 * m2
            cov = (win * pa * pb).sum() - m1 * m2
            num = (2 * m1 * m2 + C1) * (2 * cov + C2)
            vals.append(num / ((m1 * m1 + m2 * m2 + C1) * (v1 + v2 + C2)))
    return float(np.mean(vals))


def test_ssim_identical_is_one() -> None:
    img = _rgb(20, 24, seed=5)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img, y_channel=False) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("m1,m2", [(50, 60), (128, 128), (10, 240)])
def test_ssim_of_constant_images_closed_form(m1: int, m2: int) -> None:
    a = np.full((16, 16), m1, dtype=np.uint8)
    b = np.full((16, 16), m2, dtype=np.uint8)
    expected = (2 * m1 * m2 + C1) / (m1**2 + m2**2 + C1)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_ssim_matches_bruteforce_reference() -> None:
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, size=(19, 23)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, size=a.shape), 0, 255)
    assert ssim(a, b) == pytest.approx(_ssim_bruteforce(a, b), abs=1e-10)


def test_ssim_rgb_is_mean_over_channels() -> None:
    a = _rgb(16, 16, seed=7)
    b = _rgb(16, 16, seed=8)
    per_channel = [ssim(a[..., c], b[..., c]) for c in range(3)]
    assert ssim(a, b, y_channel=False) == pytest.approx(np.mean(per_channel), abs=1e-12)


def test_ssim_decreases_with_noise() -> None:
    y, x = np.mgrid[0:48, 0:48]
    base = (127 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.uint8)
    img = np.stack([base, base[::-1], base[:, ::-1]], axis=-1)
    rng = np.random.default_rng(9)
    scores = []
    for sigma in (0, 5, 15, 40):
        noisy = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)
        scores.append(ssim(img, noisy))
    assert scores[0] == pytest.approx(1.0)
    assert all(s1 > s2 for s1, s2 in zip(scores, scores[1:], strict=False)), scores


def test_ssim_crop_and_size_check() -> None:
    a = _rgb(20, 20, seed=10)
    b = a.copy()
    b[:3] = 0
    assert ssim(a, b) < 1.0
    assert ssim(a, b, crop=3) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        ssim(a, b, crop=5)  # 10x10 left: smaller than the 11x11 window


# --- evaluate_pair / to_uint8 -----------------------------------------------------


def test_evaluate_pair_psnr_and_ssim() -> None:
    hr = _rgb(50, 51, seed=12)
    hr = np.clip(hr, 20, 235).astype(np.uint8)
    sr = hr[:48, :48].copy()
    sr[10:14, 20:30] += 10
    dy = 10 * 219 / 255
    expected_psnr = 10 * math.log10(255**2 / (40 * dy**2 / (40 * 40)))
    p, s = evaluate_pair(sr, hr, 4)
    assert p == pytest.approx(expected_psnr, abs=1e-9)
    assert s == pytest.approx(ssim(sr, hr[:48, :48], crop=4), abs=0)
    assert 0.0 < s < 1.0
    assert evaluate_pair(hr[:48, :48], hr, 4)[0] == float("inf")


def test_evaluate_pair_shape_errors() -> None:
    hr = _rgb(50, 50)
    with pytest.raises(ValueError, match=r"\(40, 40, 3\).*\(50, 50, 3\)"):
        evaluate_pair(_rgb(40, 40), hr, 4)
    with pytest.raises(ValueError):
        evaluate_pair(_rgb(48, 48).astype(np.float32), hr, 4)


def test_to_uint8() -> None:
    x = np.array([-0.5, 0.0, 0.5 / 255, 0.49 / 255, 1.5 / 255, 0.5, 1.0, 2.0])
    out = to_uint8(x)
    assert out.dtype == np.uint8
    # Half-way values round up (0.5 -> 1, 1.5 -> 2, 127.5 -> 128); out of range is clamped.
    assert out.tolist() == [0, 0, 1, 0, 2, 128, 255, 255]
