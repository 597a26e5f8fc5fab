"""Real image files: every mode, 16 bits, EXIF orientation, ICC profiles and broken files.

Also home of the sample generators the other ``test_upscale_*`` modules import: a 16-bit
PNG encoder that uses every PNG row filter, and ``make_broken_files``, the directory of
deliberately broken inputs (built at test time, nothing binary is checked in).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from carn_mobile.fileio import sha256_file
from carn_mobile.upscaling.image import ImageData, ImageError, ImageTooLargeError, to_8bit
from carn_mobile.upscaling.image_read import from_pil, orient, read_image
from carn_mobile.upscaling.image_write import icc_colour_space, to_pil, write_image
from carn_mobile.upscaling.png16 import write_png16

RNG = np.random.default_rng(1234)


# ----------------------------------------------------------------------------- generators


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def random_u16(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 65536, shape, dtype=np.uint16)


def random_u8(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def broken_dir(tmp_path: Path, make_broken_files) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "broken"
    return folder, make_broken_files(folder)


# ----------------------------------------------------------------------------- broken files


def test_every_broken_file_gives_a_clear_error_and_stays_untouched(broken_dir):
    folder, expected = broken_dir
    before = {name: sha256_file(folder / name) for name in expected}
    for name, fragment in expected.items():
        with pytest.raises(ImageError) as info:
            read_image(folder / name)
        assert str(folder / name) in str(info.value)  # the message names the file
        assert fragment in info.value.reason, (name, info.value.reason)
        assert info.value.reason and "Traceback" not in info.value.reason
    assert {name: sha256_file(folder / name) for name in expected} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)  # nothing written beside them


def test_bomb_limit_is_configurable(tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(p)
    with pytest.raises(ImageTooLargeError, match="300x200 = 60,000 pixels exceeds the limit of 59,999"):
        read_image(p, max_pixels=59_999)
    assert read_image(p, max_pixels=60_000).width == 300
    assert read_image(p, max_pixels=0).height == 200  # 0: no limit


def test_pillow_limit_is_lifted_only_while_reading(tmp_path, monkeypatch):
    p = tmp_path / "img.png"
    Image.new("L", (40, 30)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse 1200 pixels
    assert read_image(p, max_pixels=0).width == 40
    assert Image.MAX_IMAGE_PIXELS == 100
    with pytest.raises(ImageTooLargeError):
        read_image(p, max_pixels=500)


def test_missing_folder_and_dangling_link(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        read_image(tmp_path)
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "link.png")


# ----------------------------------------------------------------------------- modes


def _pil_roundtrip(im: Image.Image) -> ImageData:
    buf = io.BytesIO()
    im.save(buf, "PNG" if im.mode != "CMYK" else "JPEG", quality=100)
    return from_pil(Image.open(io.BytesIO(buf.getvalue())))


def test_modes_are_read_as_gray_or_rgb_with_alpha():
    rgb = random_u8((6, 7, 3))
    d = from_pil(Image.fromarray(rgb))
    assert d.pixels.shape == (6, 7, 3) and d.alpha is None and np.array_equal(d.pixels, rgb)
    rgba = random_u8((6, 7, 4))
    d = from_pil(Image.fromarray(rgba))
    assert np.array_equal(d.pixels, rgba[..., :3]) and np.array_equal(d.alpha, rgba[..., 3])
    gray = random_u8((6, 7))
    d = from_pil(Image.fromarray(gray))
    assert d.gray and np.array_equal(d.pixels[..., 0], gray)
    la = Image.fromarray(random_u8((6, 7, 2)), "LA")
    d = from_pil(la)
    assert d.gray and np.array_equal(d.alpha, np.asarray(la)[..., 1])
    d = from_pil(Image.fromarray(gray > 128))
    assert d.gray and d.pixels.dtype == np.uint8 and set(np.unique(d.pixels)) <= {0, 255}


def test_palette_with_and_without_transparency():
    p = Image.fromarray(random_u8((6, 7, 3))).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    d = from_pil(p)
    assert d.pixels.shape == (6, 7, 3) and d.alpha is None
    assert np.array_equal(d.pixels, np.asarray(p.convert("RGB")))
    p.info["transparency"] = 0
    d = from_pil(p)
    assert d.alpha is not None and np.array_equal(d.alpha, np.asarray(p.convert("RGBA"))[..., 3])


def test_cmyk_becomes_rgb():
    cmyk = Image.fromarray(random_u8((6, 7, 4)), "CMYK")
    d = from_pil(cmyk)
    assert d.pixels.shape == (6, 7, 3) and np.array_equal(d.pixels, np.asarray(cmyk.convert("RGB")))
    assert any("CMYK" in n for n in d.notes)


def test_rgb_colour_key_transparency(tmp_path):
    p = tmp_path / "key.png"
    rgb = random_u8((5, 6, 3))
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(p, transparency=(1, 2, 3))
    d = read_image(p)
    assert d.alpha is not None and d.alpha[0, 0] == 0 and (d.alpha[1:] == 255).all()


def test_unsupported_mode_is_named():
    with pytest.raises(ImageError, match="unsupported image mode 'F'"):
        from_pil(Image.new("F", (4, 4)))


# ----------------------------------------------------------------------------- 16 bits


@pytest.mark.parametrize("colour_type,channels", [(2, 3), (6, 4), (4, 2), (0, 1)])
def test_16bit_png_is_read_exactly(tmp_path, colour_type, channels, png_bytes):
    samples = random_u16((11, 13, channels))
    p = tmp_path / "deep.png"
    p.write_bytes(png_bytes(samples[..., 0] if channels == 1 else samples, colour_type))
    d = read_image(p)
    assert d.bit_depth == 16
    colour = 1 if channels <= 2 else 3
    assert np.array_equal(d.pixels, samples[..., :colour])
    if channels in (2, 4):
        assert np.array_equal(d.alpha, samples[..., -1])
    else:
        assert d.alpha is None


def test_16bit_colour_key_transparency(tmp_path, png_bytes):
    samples = random_u16((4, 5, 3))
    samples[2, 3] = (1000, 2000, 3000)
    p = tmp_path / "key16.png"
    p.write_bytes(png_bytes(samples, 2, chunks=((b"tRNS", struct.pack(">HHH", 1000, 2000, 3000)),)))
    d = read_image(p)
    assert d.alpha is not None and d.alpha[2, 3] == 0 and d.alpha.sum() == 65535 * 19


@pytest.mark.parametrize("channels,with_alpha", [(1, False), (1, True), (3, False), (3, True)])
def test_png16_writer_round_trips(tmp_path, channels, with_alpha):
    px = random_u16((9, 300, channels))  # wide rows: several compression slices are not needed, one is
    alpha = random_u16((9, 300)) if with_alpha else None
    p = tmp_path / "w.png"
    write_png16(p, px, alpha, srgb_profile() if channels == 3 else None)
    d = read_image(p)
    assert np.array_equal(d.pixels, px)
    assert (d.alpha is None) == (alpha is None) and (alpha is None or np.array_equal(d.alpha, alpha))
    if channels == 3:
        assert d.icc_profile == srgb_profile()
    with Image.open(p) as im:  # and plain Pillow reads it (at 8 bits for colour)
        im.load()


def test_i16_and_i_modes(tmp_path):
    g = random_u16((5, 6))
    p = tmp_path / "g16.png"
    Image.fromarray(g).save(p)
    d = read_image(p)
    assert d.gray and d.bit_depth == 16 and np.array_equal(d.pixels[..., 0], g)
    d = from_pil(Image.fromarray(g.astype(np.int32), "I"))
    assert d.bit_depth == 16 and np.array_equal(d.pixels[..., 0], g)
    with pytest.raises(ImageError, match="outside 0..65535"):
        from_pil(Image.fromarray(np.full((3, 3), 70000, np.int32), "I"))


def test_to_8bit_rounds_half_up():
    a = np.arange(65536, dtype=np.uint16)
    expected = np.floor(a.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    assert np.array_equal(to_8bit(a), expected)


# ----------------------------------------------------------------------------- EXIF, ICC


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    rgb = random_u8((5, 8, 3))  # not square: transposes show
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "o.png"
    Image.fromarray(rgb).save(p, exif=exif)
    d = read_image(p)
    with Image.open(p) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert np.array_equal(d.pixels, want)
    assert np.array_equal(orient(rgb[..., 0], orientation), want[..., 0])  # 2-D arrays too


def test_exif_orientation_on_16bit(tmp_path, png_bytes):
    samples = random_u16((4, 7, 3))
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "o16.png"
    p.write_bytes(png_bytes(samples, 2, chunks=((b"eXIf", exif.tobytes()),)))
    d = read_image(p)
    assert np.array_equal(d.pixels, np.rot90(samples, -1))


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_icc_profile_is_carried(tmp_path, fmt):
    data = ImageData(random_u8((6, 6, 3)), None, srgb_profile())
    out = tmp_path / f"o.{fmt}"
    write_image(data, out, fmt)
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == srgb_profile()


def test_mismatched_icc_is_dropped_with_a_note(tmp_path):
    assert icc_colour_space(srgb_profile()) == "RGB"
    data = ImageData(random_u8((6, 6, 1)), None, srgb_profile())
    notes = write_image(data, tmp_path / "g.png", "png")
    assert any("ICC profile (RGB) dropped" in n for n in notes)
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "L" and "icc_profile" not in im.info


# ----------------------------------------------------------------------------- writing


def test_jpeg_composites_alpha_and_webp_has_no_gray(tmp_path):
    px = np.full((4, 4, 3), 0, np.uint8)
    alpha = np.zeros((4, 4), np.uint8)
    notes = write_image(ImageData(px, alpha), tmp_path / "a.jpg", "jpg")
    assert any("over white" in n for n in notes)
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.mode == "RGB" and np.asarray(im).min() >= 250  # transparent black -> white
    notes = write_image(ImageData(random_u8((4, 4, 1))), tmp_path / "g.webp", "webp")
    assert any("WebP has no grayscale" in n for n in notes)


def test_16bit_to_jpeg_is_reduced_with_a_note(tmp_path):
    notes = write_image(ImageData(random_u16((4, 4, 3))), tmp_path / "d.jpg", "jpg")
    assert any("reduced to 8 bits" in n for n in notes)


def test_write_never_overwrites_without_force_and_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="--force"):
        write_image(ImageData(random_u8((4, 4, 3))), out, "png")
    assert out.read_bytes() == b"keep me"
    write_image(ImageData(random_u8((4, 4, 3))), out, "png", force=True)
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="quality"):
        write_image(ImageData(random_u8((4, 4, 3))), tmp_path / "q.jpg", "jpg", quality=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_to_pil_modes():
    assert to_pil(ImageData(random_u8((3, 4, 1)))).mode == "L"
    assert to_pil(ImageData(random_u8((3, 4, 1)), random_u8((3, 4)))).mode == "LA"
    assert to_pil(ImageData(random_u8((3, 4, 3)), random_u8((3, 4)))).mode == "RGBA"
    assert to_pil(ImageData(random_u16((3, 4, 1)))).mode == "I;16"
    assert to_pil(ImageData(random_u16((3, 4, 3)))).mode == "RGB"  # Pillow has no 16-bit RGB


def test_permission_denied_is_reported(tmp_path, monkeypatch):
    # Simulated: the tests may run as root, whom permission bits do not stop.
    from carn_mobile.upscaling import image_read

    p = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(p)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(image_read, "open", deny, raising=False)
    with pytest.raises(ImageError, match="cannot read: permission denied"):
        read_image(p)
