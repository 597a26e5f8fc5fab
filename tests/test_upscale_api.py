"""``carn_mobile.upscale(image, scale, model)``: PIL, paths and arrays in, the same kind out."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import carn_mobile
from carn_mobile.fileio import sha256_file
from carn_mobile.imresize import imresize
from carn_mobile.metrics import to_uint8
from carn_mobile.models import build_model
from carn_mobile.upscaling import ApproximateTilingWarning, ImageError, Upscaler, available_backends
from carn_mobile.upscaling.image import gray_from_rgb
from carn_mobile.upscaling.image_read import read_image
from carn_mobile.weights import load_model

RNG = np.random.default_rng(99)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("carn-m", channels=8, groups=4).eval()


def _reference(rgb_u8: np.ndarray, scale: int) -> np.ndarray:
    """The shipped CARN-M applied directly, clamped and rounded: what every path must give."""
    x = torch.from_numpy(rgb_u8.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = load_model("carn-m")(x, scale)[0].permute(1, 2, 0).numpy()
    return to_uint8(y)


def test_import_stays_light_and_upscale_is_callable():
    code = "import sys, carn_mobile; assert 'torch' not in sys.modules; print(callable(carn_mobile.upscale))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
    assert callable(carn_mobile.upscale) and "torch" in available_backends()


def test_pil_in_pil_out_equals_the_network():
    rgb = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    out = carn_mobile.upscale(Image.fromarray(rgb), scale=2)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (22, 18)
    assert np.array_equal(np.asarray(out), _reference(rgb, 2))


def test_pil_modes_come_back(tiny):
    up = Upscaler(2, tiny)
    rgba = RNG.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    cases = {
        "L": Image.fromarray(rgba[..., 0]),
        "LA": Image.fromarray(rgba[..., :2], "LA"),
        "RGB": Image.fromarray(rgba[..., :3]),
        "RGBA": Image.fromarray(rgba),
        "P": Image.fromarray(rgba[..., :3]).convert("P"),
        "CMYK": Image.fromarray(rgba, "CMYK"),
        "1": Image.fromarray(rgba[..., 0] > 100),
        "I;16": Image.fromarray(rgba[..., 0].astype(np.uint16) * 257),
    }
    want = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "P": "RGB", "CMYK": "RGB", "1": "L", "I;16": "I;16"}
    for mode, im in cases.items():
        out = up.upscale(im)
        assert out.mode == want[mode] and out.size == (14, 12), mode


def test_rgba_alpha_is_bicubic_and_colour_ignores_it(tiny):
    up = Upscaler(3, tiny)
    rgba = RNG.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    out = np.asarray(up.upscale(Image.fromarray(rgba)))
    a = (rgba[..., 3].astype(np.float32) / np.float32(255)).astype(np.float64)
    assert np.array_equal(out[..., 3], to_uint8(imresize(a, 3).astype(np.float32)))
    rgb_only = np.asarray(up.upscale(Image.fromarray(rgba[..., :3])))
    assert np.array_equal(out[..., :3], rgb_only)


def test_gray_goes_through_the_network_as_rgb(tiny):
    up = Upscaler(2, tiny, tile=None)
    g = RNG.integers(0, 256, (7, 8), dtype=np.uint8)
    out = up.upscale(g)
    x = np.repeat(g[None, None].astype(np.float32) / 255, 3, axis=1)
    sr = up.backend.run(x)[0].transpose(1, 2, 0)
    assert out.shape == (14, 16) and np.array_equal(out, to_uint8(gray_from_rgb(sr)[..., 0]))


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 1), (6, 7, 2), (6, 7, 3), (6, 7, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_arrays_keep_dtype_and_layout(tiny, shape, dtype):
    if np.issubdtype(dtype, np.floating):
        a = RNG.random(shape).astype(dtype)
    else:
        a = RNG.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    out = carn_mobile.upscale(a, scale=2, model=tiny)
    assert out.dtype == dtype and out.shape == (12, 14) + shape[2:]
    if np.issubdtype(dtype, np.floating):
        assert out.min() >= 0 and out.max() <= 1


def test_16bit_keeps_precision(tiny):
    up = Upscaler(2, tiny, tile=None)
    ramp = (np.linspace(0, 1, 8 * 9 * 3).reshape(8, 9, 3) * 65535).round().astype(np.uint16)
    out16 = up.upscale(ramp)
    out_f = up.upscale(ramp.astype(np.float32) / 65535)
    assert np.abs(out16.astype(np.float64) / 65535 - out_f).max() <= 0.51 / 65535 + 1e-6
    assert np.count_nonzero(out16 % 257) > out16.size // 2  # not just 8-bit values scaled up


def test_bad_arrays_and_arguments(tiny):
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        carn_mobile.upscale(np.full((4, 4, 3), 2.0), scale=2, model=tiny)
    with pytest.raises(ValueError, match="NaN"):
        carn_mobile.upscale(np.full((4, 4, 3), np.nan), scale=2, model=tiny)
    with pytest.raises(TypeError, match="dtype bool"):
        carn_mobile.upscale(np.ones((4, 4), bool), scale=2, model=tiny)
    with pytest.raises(ValueError, match="H x W"):
        carn_mobile.upscale(np.ones((4, 4, 5), np.uint8), scale=2, model=tiny)
    with pytest.raises(ImageError, match="at least 2x2"):
        carn_mobile.upscale(np.ones((1, 9, 3), np.uint8), scale=2, model=tiny)
    with pytest.raises(ImageError, match="0x0"):
        carn_mobile.upscale(Image.new("RGB", (0, 0)), scale=2, model=tiny)
    with pytest.raises(ValueError, match="unsupported scale 5"):
        carn_mobile.upscale(np.ones((4, 4, 3), np.uint8), scale=5)
    with pytest.raises(ValueError, match=r"x8 not available"):
        carn_mobile.upscale(np.ones((4, 4, 3), np.uint8), scale=8)
    with pytest.raises(ValueError, match="unknown backend"):
        Upscaler(2, tiny, backend="tflite")
    with pytest.raises(TypeError, match="PIL image, a NumPy array or a path"):
        carn_mobile.upscale([[1, 2], [3, 4]], scale=2, model=tiny)
    with pytest.raises(ValueError, match="tile must be"):
        Upscaler(2, tiny, tile=-3)
    with pytest.raises(ValueError, match="weights only with a model name"):
        Upscaler(2, tiny, weights="carn-m")


def test_small_overlap_warns(tiny):
    with pytest.warns(ApproximateTilingWarning, match="overlap 5 is below the receptive field"):
        up = Upscaler(2, tiny, tile=8, overlap=5)
    assert not up.exact
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Upscaler(2, tiny, tile=8, overlap=30).exact


def test_path_in_path_out(tmp_path, tiny):
    src = tmp_path / "photo.jpg"
    Image.fromarray(RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(src, quality=90)
    digest = sha256_file(src)
    out = carn_mobile.upscale(src, scale=2, model=tiny)
    assert out == tmp_path / "photo_x2.jpg" and Image.open(out).size == (24, 20)
    with pytest.raises(FileExistsError, match="--force"):
        carn_mobile.upscale(str(src), scale=2, model=tiny)
    again = carn_mobile.upscale(str(src), scale=2, model=tiny, force=True, output=tmp_path / "o" / "x.webp")
    assert again == tmp_path / "o" / "x.webp" and Image.open(again).format == "WEBP"
    with pytest.raises(ImageError, match="is the input file itself"):
        carn_mobile.upscale(src, scale=2, model=tiny, output=src, force=True)
    assert sha256_file(src) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "photo.jpg", "photo_x2.jpg"]


def test_16bit_png_file_stays_16bit(tmp_path, tiny, png_bytes):
    src = tmp_path / "deep.png"
    samples = RNG.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    src.write_bytes(png_bytes(samples, 2))
    out = carn_mobile.upscale(src, scale=2, model=tiny)
    d = read_image(out)
    assert d.bit_depth == 16 and d.pixels.shape == (12, 14, 3)
    direct = Upscaler(2, tiny).upscale(samples)
    assert np.array_equal(d.pixels, direct)


def test_shipped_weights_are_loaded_once():
    from carn_mobile.upscaling import backends

    a = backends.resolve_model("carn-m")
    assert backends.resolve_model("carn-m") is a
    assert backends.resolve_model("carn-m", "carn-m") is not None
