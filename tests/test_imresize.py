"""Tests for carn_mobile.imresize: MATLAB bit-exactness and the resize rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import shared_root

from carn_mobile.imresize import (
    _contributions,
    _resize_axis,
    _round_uint8,
    bicubic_downscale,
    imresize,
    modcrop,
)

BENCHMARK = shared_root() / "data" / "benchmark"
SETS = {
    "Set5": ["baby", "bird", "butterfly", "head", "woman"],
    "Set14": [
        "baboon",
        "barbara",
        "bridge",
        "coastguard",
        "comic",
        "face",
        "flowers",
        "foreman",
        "lenna",
        "man",
        "monarch",
        "pepper",
        "ppt3",
        "zebra",
    ],
}
SKIP_REASON = f"benchmark data not found under {BENCHMARK} (set CARN_SHARED to the shared folder)"
CASES = [(s, name, scale) for s, names in SETS.items() for name in names for scale in (2, 3, 4)]


def _load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def hr_cache() -> dict[tuple[str, str], np.ndarray]:
    # Each HR image serves three scales; decode it once.
    return {}


@pytest.mark.parametrize("set_name,name,scale", CASES, ids=[f"{s}-{n}-x{k}" for s, n, k in CASES])
def test_matches_matlab_lr_files(set_name: str, name: str, scale: int, hr_cache: dict) -> None:
    hr_path = BENCHMARK / set_name / "HR" / f"{name}.png"
    lr_path = BENCHMARK / set_name / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png"
    if not hr_path.is_file() or not lr_path.is_file():
        pytest.skip(SKIP_REASON)
    key = (set_name, name)
    if key not in hr_cache:
        hr_cache[key] = _load_rgb(hr_path)
    lr_ref = _load_rgb(lr_path)
    lr = bicubic_downscale(hr_cache[key], scale)
    assert lr.dtype == np.uint8
    assert lr.shape == lr_ref.shape
    diff = np.abs(lr.astype(np.int16) - lr_ref.astype(np.int16))
    assert diff.max() == 0, f"{np.count_nonzero(diff)} pixels differ, max {diff.max()}"


def _downscale_round_once(img: np.ndarray, scale: int) -> np.ndarray:
    """The tempting shortcut: both passes in float, one rounding at the end."""
    x = modcrop(img, scale).astype(np.float64)
    s = 1.0 / scale
    x = _resize_axis(x, 0, s, x.shape[0] // scale, quantize=False)
    x = _resize_axis(x, 1, s, x.shape[1] // scale, quantize=False)
    return _round_uint8(x).astype(np.uint8)


def test_intermediate_rounding_matters() -> None:
    rng = np.random.default_rng(0)
    # Mid-range values: the kernel's overshoot never reaches 0 or 255, so the two
    # paths differ by rounding alone, not by intermediate saturation.
    img = rng.integers(40, 216, size=(48, 48, 3), dtype=np.uint8)
    exact = bicubic_downscale(img, 2)
    shortcut = _downscale_round_once(img, 2)
    # Rounding once at the end changes some pixels, each by one grey level.
    assert np.count_nonzero(exact != shortcut) > 0
    assert np.abs(exact.astype(int) - shortcut.astype(int)).max() <= 1
    # The float API is exactly that unrounded two-pass result.
    ref = imresize(modcrop(img, 2).astype(np.float64), 0.5)
    assert np.array_equal(_round_uint8(ref).astype(np.uint8), shortcut)


def test_intermediate_rounding_matters_on_real_image() -> None:
    hr_path = BENCHMARK / "Set5" / "HR" / "baby.png"
    lr_path = BENCHMARK / "Set5" / "LR_bicubic" / "X2" / "babyx2.png"
    if not hr_path.is_file() or not lr_path.is_file():
        pytest.skip(SKIP_REASON)
    shortcut = _downscale_round_once(_load_rgb(hr_path), 2)
    assert np.count_nonzero(shortcut != _load_rgb(lr_path)) > 0


@pytest.mark.parametrize(
    "shape,scale,expected",
    [
        ((10, 7), 0.5, (5, 4)),
        ((9, 9, 3), 1 / 3, (3, 3, 3)),
        ((10, 11, 3), 1 / 3, (4, 4, 3)),
        ((5, 6), 2.0, (10, 12)),
        ((5, 6), 1.5, (8, 9)),
        ((7, 7), 1.0, (7, 7)),
    ],
)
def test_output_size_is_ceil(shape: tuple, scale: float, expected: tuple) -> None:
    assert imresize(np.zeros(shape, dtype=np.uint8), scale).shape == expected
    assert imresize(np.zeros(shape, dtype=np.float32), scale).shape == expected


def test_dtypes() -> None:
    img = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    assert imresize(img, 0.5).dtype == np.float64
    assert imresize((img * 255).astype(np.uint8), 0.5).dtype == np.uint8
    with pytest.raises(TypeError):
        imresize(np.zeros((4, 4), dtype=np.int32), 0.5)
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), 0.0)
    with pytest.raises(ValueError):
        imresize(np.zeros(4), 0.5)


def test_float_input_is_not_rounded() -> None:
    rng = np.random.default_rng(1)
    img = rng.random((12, 12))
    out = imresize(img, 0.5)
    assert not np.allclose(out, np.round(out))


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 1.0, 2.0, 3.0, 4.0])
def test_constant_image_stays_constant(scale: float) -> None:
    img = np.full((13, 17, 3), 137, dtype=np.uint8)
    out = imresize(img, scale)
    assert np.all(out == 137)
    outf = imresize(img.astype(np.float64) / 255.0, scale)
    np.testing.assert_allclose(outf, 137 / 255.0, rtol=0, atol=1e-12)


def test_upscale_reproduces_a_ramp_in_the_interior() -> None:
    # Keys' cubic (a = -0.5) interpolates linear functions exactly. With a factor 2,
    # 0-based output i sits at 0-based input i/2 - 0.25, so a ramp v[j] = j becomes
    # i/2 - 0.25 wherever no tap touches the border.
    n = 20
    ramp = np.tile(np.arange(n, dtype=np.float64), (6, 1))
    out = imresize(ramp, 2)
    i = np.arange(out.shape[1])
    interior = slice(4, out.shape[1] - 4)
    expected = np.broadcast_to(i[interior] / 2 - 0.25, out[:, interior].shape)
    np.testing.assert_allclose(out[:, interior], expected, rtol=0, atol=1e-12)
    # The rows are constant, so the vertical pass changes nothing.
    assert np.allclose(out, out[0])


def test_upscale_uses_unwidened_kernel() -> None:
    # Enlarging keeps the 4-tap kernel (plus MATLAB's 2 guard taps, dropped when
    # zero); shrinking by s widens it to 4/s taps.
    idx_up, w_up = _contributions(10, 20, 2.0)
    idx_dn, w_dn = _contributions(20, 10, 0.5)
    assert w_up.shape[1] <= 6 and np.count_nonzero(w_up, axis=1).max() == 4
    assert np.count_nonzero(w_dn, axis=1).max() == 8
    np.testing.assert_allclose(w_up.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w_dn.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # Borders are replicated: indices are clamped into range.
    assert idx_dn.min() == 0 and idx_dn.max() == 19


def test_downscale_then_upscale_is_close_on_smooth_image() -> None:
    y, x = np.mgrid[0:64, 0:64] / 64.0
    img = np.sin(2 * np.pi * x) * np.cos(2 * np.pi * y)
    back = imresize(imresize(img, 0.5), 2)
    assert back.shape == img.shape
    assert np.abs(back - img)[8:-8, 8:-8].max() < 0.02


def test_modcrop() -> None:
    img = np.arange(7 * 10 * 3).reshape(7, 10, 3)
    out = modcrop(img, 3)
    assert out.shape == (6, 9, 3)
    assert np.array_equal(out, img[:6, :9])
    assert modcrop(img[..., 0], 2).shape == (6, 10)
    assert modcrop(img, 1).shape == img.shape
    with pytest.raises(ValueError):
        modcrop(img, 0)


def test_bicubic_downscale_shape_and_dtype() -> None:
    img = np.random.default_rng(2).integers(0, 256, size=(31, 22, 3), dtype=np.uint8)
    lr = bicubic_downscale(img, 4)
    assert lr.shape == (7, 5, 3) and lr.dtype == np.uint8
    with pytest.raises(TypeError):
        bicubic_downscale(img.astype(np.float32), 4)
