"""Reading image files and Pillow images into :class:`~.image.ImageData`.

Modes, EXIF orientation, ICC profiles, 16 bits and bad files. Pillow 13 decodes 48/64-bit
RGB(A) PNGs and 16-bit gray+alpha PNGs to 8 bits per channel. For those, :func:`read_image`
decodes the file twice through Pillow's own PNG decoder with two raw modes that pick the high
and the low byte of every sample, which recovers the full 16 bits without a second PNG
implementation.
"""

from __future__ import annotations

import contextlib
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .image import DEFAULT_MAX_PIXELS, ImageData, ImageError, ImageTooLargeError, check_min_size, check_pixel_count

_ORIENTATION_TAG = 0x0112

# Pillow raw modes for 16-bit PNGs it reduces to 8 bits: (high-byte decode, low-byte decode).
_PNG16_RAWMODES = {"RGB;16B": ("RGB;16B", "RGB;16L"), "RGBA;16B": ("RGBA;16B", "RGBA;16L")}

_bomb_lock = threading.Lock()



def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read an image file for upscaling; the file is opened read-only and never changed.

    Applies the EXIF orientation, keeps the ICC profile, keeps 16-bit precision (PNG
    RGB/RGBA/gray/gray+alpha, and every 16-bit grayscale mode Pillow reads), and takes the
    first frame of animations. ``max_pixels=0`` disables the pixel limit.

    Raises:
        ImageTooLargeError: more than ``max_pixels`` pixels (checked from the header, before
            any pixel is decoded).
        ImageError: missing, empty, unreadable, not an image, truncated or corrupt, unsupported
            mode, or smaller than 2x2.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError("no such file", p) from None
    except OSError as exc:
        raise ImageError(f"cannot access: {exc.strerror or exc}", p) from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError("is a folder, not an image file", p)
    if not stat.S_ISREG(st.st_mode):
        raise ImageError("not a regular file", p)
    if st.st_size == 0:
        raise ImageError("empty file (0 bytes)", p)
    try:
        with open(p, "rb") as fh, _pixel_limit(max_pixels):
            im = Image.open(fh)
            check_pixel_count(im.size, max_pixels)
            check_min_size(*im.size)
            data = _decode_file(im, fh)
    except ImageError as exc:
        raise type(exc)(exc.reason, p) from None
    except PermissionError:
        raise ImageError("cannot read: permission denied", p) from None
    except UnidentifiedImageError:
        raise ImageError("not an image file (unknown format or corrupt header)", p) from None
    except Image.DecompressionBombError as exc:
        # Pillow's own hard limit struck first; re-read only the header for a message in our terms.
        try:
            with open(p, "rb") as fh, _pixel_limit(0), Image.open(fh) as im:
                check_pixel_count(im.size, max_pixels)
        except ImageTooLargeError as ours:
            raise ImageTooLargeError(ours.reason, p) from None
        except Exception:
            pass
        raise ImageTooLargeError(f"{exc} (limit: --max-pixels {max_pixels:,})", p) from None
    except MemoryError:
        raise ImageError("not enough memory to decode this image", p) from None
    except OSError as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower():
            raise ImageError(f"truncated image data ({msg})", p) from None
        raise ImageError(f"cannot decode: {msg}", p) from None
    except Exception as exc:  # Pillow raises many types (SyntaxError, struct.error, ...) on corrupt data
        raise ImageError(f"corrupt image ({type(exc).__name__}: {exc})", p) from None
    return data


@contextlib.contextmanager
def _pixel_limit(max_pixels: int) -> Iterator[None]:
    """Make Pillow's global bomb check defer to ``max_pixels`` while one file is opened.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` and refuses above twice that. Its warning
    is silenced (our own check on the header size replaces it); its hard limit is lifted,
    under a lock and only for this call, when ``max_pixels`` is higher or disabled.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pillow_max = Image.MAX_IMAGE_PIXELS
        if pillow_max is None or (max_pixels and max_pixels <= 2 * pillow_max):
            yield
            return
        with _bomb_lock:
            Image.MAX_IMAGE_PIXELS = None
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = pillow_max


def _decode_file(im: Image.Image, fh: BinaryIO) -> ImageData:
    notes = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"{frames} frames: only the first is upscaled")
    rawmode = _png_rawmode(im)
    if rawmode in _PNG16_RAWMODES or rawmode == "LA;16B":
        data = _read_png16(im, fh, rawmode)
    else:
        im.load()
        data = _from_pil_modes(im)
    data.source_format = im.format
    data.notes[:0] = notes
    return _oriented(data, _orientation(im))


def _png_rawmode(im: Image.Image) -> str | None:
    if im.format != "PNG" or len(im.tile) != 1:
        return None
    args = im.tile[0][3]
    return args if isinstance(args, str) else None


def _with_rawmode(im: Image.Image, rawmode: str) -> None:
    t = im.tile[0]
    im.tile = [t._replace(args=rawmode) if hasattr(t, "_replace") else (t[0], t[1], t[2], rawmode)]


def _read_png16(im: Image.Image, fh: BinaryIO, rawmode: str) -> ImageData:
    """Full 16-bit samples of a PNG that Pillow would reduce to 8 bits.

    Pillow's PNG decoder undoes the row filters on whole pixels (6 or 8 bytes for RGB/RGBA,
    4 for gray+alpha) and only then unpacks; the ``;16B`` and ``;16L`` raw modes of the same
    pixel size keep the first and the second byte of every sample, so two decodes give the
    high and the low bytes. Gray+alpha is decoded once as raw 4-byte RGBA.
    """
    info = dict(im.info)
    if rawmode == "LA;16B":
        _with_rawmode(im, "RGBA")
        im.load()
        raw = np.asarray(im).astype(np.uint16)
        gray = (raw[..., 0] << 8) | raw[..., 1]
        alpha = (raw[..., 2] << 8) | raw[..., 3]
        return ImageData(gray[..., None], alpha, info.get("icc_profile") or None, source_mode="LA;16")
    hi_mode, lo_mode = _PNG16_RAWMODES[rawmode]
    _with_rawmode(im, hi_mode)
    im.load()
    hi = np.asarray(im).astype(np.uint16)
    fh.seek(0)
    with Image.open(fh) as again:
        _with_rawmode(again, lo_mode)
        again.load()
        lo = np.asarray(again).astype(np.uint16)
    full = (hi << 8) | lo
    color, alpha = full[..., :3], (full[..., 3] if full.shape[2] == 4 else None)
    if alpha is None and isinstance(info.get("transparency"), tuple):
        alpha = _key_alpha(color, info["transparency"], np.uint16)
    mode = "RGBA;16" if rawmode.startswith("RGBA") else "RGB;16"
    return ImageData(np.ascontiguousarray(color), alpha, info.get("icc_profile") or None, source_mode=mode)


def from_pil(im: Image.Image) -> ImageData:
    """An in-memory Pillow image as :class:`ImageData` (EXIF orientation applied)."""
    check_min_size(*im.size)
    data = _from_pil_modes(im)
    data.source_format = im.format
    return _oriented(data, _orientation(im))


def _key_alpha(pixels: np.ndarray, key: int | tuple[int, ...], dtype: type) -> np.ndarray:
    """Alpha from a transparency colour key (PNG tRNS for gray/RGB): 0 where it matches."""
    key_arr = np.asarray(key if isinstance(key, tuple) else (key,), dtype=np.int64)
    hit = np.all(pixels.astype(np.int64) == key_arr[: pixels.shape[2]], axis=2)
    return np.where(hit, 0, np.iinfo(dtype).max).astype(dtype)


def _from_pil_modes(im: Image.Image) -> ImageData:
    """Pixels of every mode we accept; anything else is a clear ``ImageError``."""
    mode = im.mode
    icc = im.info.get("icc_profile") or None
    key = im.info.get("transparency")
    notes: list[str] = []
    if mode == "1":
        im, notes = im.convert("L"), ["1-bit image read as 8-bit grayscale"]
        mode = "L"
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or key is not None
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append(f"palette image written back as {'RGBA' if has_alpha else 'RGB'}")
        mode, key = im.mode, None
    elif mode == "CMYK":
        im = im.convert("RGB")
        notes.append("CMYK converted to RGB (Pillow's conversion); written back as RGB")
        mode = "RGB"
    elif mode in ("RGBX", "YCbCr"):
        im, mode = im.convert("RGB"), "RGB"
    elif mode in ("RGBa", "La"):
        im = im.convert("RGBA")  # un-premultiply
        if mode == "La":
            a = np.asarray(im)
            return ImageData(a[..., :1].copy(), a[..., 3].copy(), icc, source_mode="La", notes=notes)
        mode = "RGBA"
    a = np.asarray(im)
    if mode == "L":
        alpha = _key_alpha(a[..., None], key, np.uint8) if isinstance(key, int) else None
        return ImageData(a[..., None].copy(), alpha, icc, source_mode=im.mode, notes=notes)
    if mode == "LA":
        return ImageData(a[..., :1].copy(), a[..., 1].copy(), icc, source_mode=mode, notes=notes)
    if mode == "RGB":
        alpha = _key_alpha(a, key, np.uint8) if isinstance(key, tuple) else None
        return ImageData(a.copy(), alpha, icc, source_mode=im.mode, notes=notes)
    if mode == "RGBA":
        return ImageData(a[..., :3].copy(), a[..., 3].copy(), icc, source_mode=mode, notes=notes)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            raise ImageError("32-bit integer image with values outside 0..65535 is not supported")
        g = a.astype(np.uint16)[..., None]
        alpha = _key_alpha(g, key, np.uint16) if isinstance(key, int) else None
        return ImageData(g, alpha, icc, source_mode=mode, notes=notes)
    raise ImageError(f"unsupported image mode {mode!r} (supported: 1, L, LA, P, RGB, RGBA, CMYK, 16-bit gray)")


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # a broken EXIF block must not stop the image itself
        return 1
    return value if 1 <= value <= 8 else 1


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an ``H x W [x C]`` array, as ``ImageOps.exif_transpose``."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = np.rot90(a, 2).swapaxes(0, 1)
    elif orientation == 8:
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)


def _oriented(data: ImageData, orientation: int) -> ImageData:
    if orientation == 1:
        return data
    data.pixels = orient(data.pixels, orientation)
    data.alpha = None if data.alpha is None else orient(data.alpha, orientation)
    data.notes.append(f"EXIF orientation {orientation} applied")
    return data

