"""Real image files in and out: modes, EXIF orientation, ICC profiles, 16 bits, bad files.

Everything is turned into an :class:`ImageData`: colour as ``H x W x 1`` (grayscale) or
``H x W x 3`` (RGB) pixels, an optional ``H x W`` alpha plane, both ``uint8`` or ``uint16``
(``float32`` for float arrays given to the Python API), the ICC profile and notes about
anything that was converted on the way.

Pillow 13 decodes 48/64-bit RGB(A) PNGs and 16-bit gray+alpha PNGs to 8 bits per channel.
For those, :func:`read_image` decodes the file twice through Pillow's own PNG decoder with
two raw modes that pick the high and the low byte of every sample, which recovers the full
16 bits without a second PNG implementation; 16-bit PNGs are written by :func:`write_png16`.
"""

from __future__ import annotations

import contextlib
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..fileio import atomic_output

#: Default decompression-bomb guard: largest input, in pixels (``--max-pixels``).
DEFAULT_MAX_PIXELS = 50_000_000
#: Smallest side an image may have; a 1-pixel row or column is no image to upscale.
MIN_SIDE = 2
#: Output formats: CLI name -> Pillow format.
FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
#: File suffixes of the output formats.
SUFFIX_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp"}
#: Suffixes picked up when a folder or glob is scanned for inputs.
INPUT_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga"}
)
# ITU-R BT.601 luma, as Pillow's RGB -> L conversion: how a gray input's RGB output is folded back.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_ORIENTATION_TAG = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow raw modes for 16-bit PNGs it reduces to 8 bits: (high-byte decode, low-byte decode).
_PNG16_RAWMODES = {"RGB;16B": ("RGB;16B", "RGB;16L"), "RGBA;16B": ("RGBA;16B", "RGBA;16L")}
_bomb_lock = threading.Lock()


class ImageError(ValueError):
    """An image that cannot be read, decoded or written; ``reason`` omits the path."""

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path is not None else reason)


class ImageTooLargeError(ImageError):
    """The image exceeds the pixel limit (decompression-bomb guard)."""


@dataclass
class ImageData:
    """Pixels in a form the upscaler works on, plus what must be carried to the output."""

    pixels: np.ndarray  # H x W x 1 (gray) or H x W x 3 (RGB): uint8, uint16 or float32
    alpha: np.ndarray | None = None  # H x W, same dtype as pixels
    icc_profile: bytes | None = None
    source_format: str | None = None  # Pillow's format name of the file read
    source_mode: str | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3 or self.pixels.shape[2] not in (1, 3):
            raise ValueError(f"pixels must be H x W x 1 or H x W x 3, got {self.pixels.shape}")
        if self.alpha is not None and (
            self.alpha.shape != self.pixels.shape[:2] or self.alpha.dtype != self.pixels.dtype
        ):
            raise ValueError("alpha must be H x W with the dtype of the pixels")

    @property
    def gray(self) -> bool:
        return self.pixels.shape[2] == 1

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def bit_depth(self) -> int:
        """Bits per sample: 8, 16 or 32 (float)."""
        return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(self.pixels.dtype, 32)

    def with_pixels(self, pixels: np.ndarray, alpha: np.ndarray | None) -> ImageData:
        """A copy holding new pixels (e.g. the upscaled ones) and the same metadata."""
        return replace(self, pixels=pixels, alpha=alpha, notes=list(self.notes))


# --------------------------------------------------------------------------- reading


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


def check_pixel_count(size: tuple[int, int], max_pixels: int) -> None:
    """Raise ``ImageTooLargeError`` if ``width * height`` exceeds ``max_pixels`` (0: no limit)."""
    w, h = size
    if max_pixels and w * h > max_pixels:
        raise ImageTooLargeError(
            f"{w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
            "(a decompression-bomb guard; raise it with --max-pixels)"
        )


def check_min_size(width: int, height: int) -> None:
    """Raise ``ImageError`` for an image with a side below :data:`MIN_SIDE` pixels."""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(f"image is {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")


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


# --------------------------------------------------------------------------- writing


def format_for(path: str | Path) -> str:
    """Output format for a file name: its suffix if png/jpg/jpeg/webp, else png."""
    return SUFFIX_FORMATS.get(Path(path).suffix.lower(), "png")


def gray_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """``H x W x 3`` float RGB -> ``H x W x 1`` luma (BT.601, as Pillow's ``convert('L')``)."""
    return (rgb.astype(np.float32) @ _LUMA)[..., None]


def to_8bit(a: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 rounding half up (``a * 255 / 65535 = a / 257``); uint8 unchanged."""
    if a.dtype == np.uint8:
        return a
    if a.dtype != np.uint16:
        raise TypeError(f"expected uint8 or uint16, got {a.dtype}")
    return ((a.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)


def icc_colour_space(profile: bytes | None) -> str | None:
    """Colour space signature of an ICC profile header (``'RGB'``, ``'GRAY'``, ``'CMYK'``...)."""
    if not profile or len(profile) < 20:
        return None
    return profile[16:20].decode("ascii", "replace").strip()


def _compatible_icc(profile: bytes | None, gray: bool, notes: list[str]) -> bytes | None:
    space = icc_colour_space(profile)
    if space is None:
        return None
    if space == ("GRAY" if gray else "RGB"):
        return profile
    notes.append(f"ICC profile ({space}) dropped: it does not describe a {'gray' if gray else 'RGB'} output")
    return None


def to_pil(data: ImageData) -> Image.Image:
    """:class:`ImageData` (8 or 16 bit) -> Pillow image, ICC profile in ``info``.

    Pillow has no 16-bit colour or gray+alpha modes, so those come back as 8 bits; 16-bit
    gray without alpha stays ``I;16``.
    """
    notes: list[str] = []
    if data.bit_depth == 16 and data.gray and data.alpha is None:
        im = Image.fromarray(np.ascontiguousarray(data.pixels[..., 0]))
    else:
        if data.bit_depth not in (8, 16):
            raise TypeError("to_pil needs uint8 or uint16 pixels")
        px, alpha = to_8bit(data.pixels), None if data.alpha is None else to_8bit(data.alpha)
        arr = px[..., 0] if data.gray else px
        if alpha is not None:
            arr = np.dstack([arr, alpha])
        im = Image.fromarray(np.ascontiguousarray(arr))
    icc = _compatible_icc(data.icc_profile, data.gray, notes)
    if icc:
        im.info["icc_profile"] = icc
    return im


def write_image(data: ImageData, path: str | Path, fmt: str, *, quality: int = 95, force: bool = False) -> list[str]:
    """Write ``data`` atomically as ``fmt`` (png, jpg, webp); returns notes on what changed.

    PNG keeps 8 or 16 bits, grayscale and alpha. JPEG and WebP are 8-bit; JPEG has no alpha
    (the image is composited over white) and WebP no grayscale (written as RGB). The ICC
    profile is embedded when it describes the output's colour space. An existing file is
    only replaced with ``force``; on any error nothing is left behind.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unsupported output format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be within 1..100, got {quality}")
    if data.bit_depth not in (8, 16):
        raise TypeError("write_image needs uint8 or uint16 pixels")
    notes: list[str] = []
    pixels, alpha, gray = data.pixels, data.alpha, data.gray
    if fmt != "png" and data.bit_depth == 16:
        pixels, alpha = to_8bit(pixels), None if alpha is None else to_8bit(alpha)
        notes.append(f"16-bit samples reduced to 8 bits ({fmt.upper()} is 8-bit)")
    if fmt == "jpg" and alpha is not None:
        a = alpha.astype(np.uint32)[..., None]
        pixels = ((pixels.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)
        alpha = None
        notes.append("alpha composited over white (JPEG has no transparency)")
    if fmt == "webp" and gray:
        pixels, gray = np.repeat(pixels, 3, axis=2), False
        notes.append("grayscale written as RGB (WebP has no grayscale)")
    icc = _compatible_icc(data.icc_profile, gray, notes)
    with atomic_output(path, force=force) as tmp:
        if pixels.dtype == np.uint16:
            write_png16(tmp, pixels, alpha, icc)
        else:
            arr = pixels[..., 0] if gray else pixels
            if alpha is not None:
                arr = np.dstack([arr, alpha])
            im = Image.fromarray(np.ascontiguousarray(arr))
            params: dict = {"icc_profile": icc} if icc else {}
            if fmt == "jpg":
                params.update(quality=quality, subsampling=0)
            elif fmt == "webp":
                params.update(quality=quality)
            im.save(tmp, format=FORMATS[fmt], **params)
    return notes


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png16(path: str | Path, pixels: np.ndarray, alpha: np.ndarray | None, icc: bytes | None = None) -> None:
    """Write a 16-bit PNG (gray, gray+alpha, RGB or RGBA) with an optional ICC profile.

    Rows use the PNG 'Up' filter (difference to the row above, byte-wise modulo 256) and
    are compressed in slices, so no second full-size buffer is made.
    """
    h, w, c = pixels.shape
    channels = c + (alpha is not None)
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    comp = zlib.compressobj(6)
    prev = np.zeros(w * channels * 2, dtype=np.uint8)
    rows_per_slice = max(1, (8 << 20) // (w * channels * 2))
    with open(path, "wb") as fh:
        fh.write(_PNG_SIGNATURE + _png_chunk(b"IHDR", header))
        if icc:
            fh.write(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
        for y0 in range(0, h, rows_per_slice):
            y1 = min(y0 + rows_per_slice, h)
            block = pixels[y0:y1] if alpha is None else np.dstack([pixels[y0:y1], alpha[y0:y1]])
            raw = block.astype(">u2").reshape(y1 - y0, -1).view(np.uint8)
            up = np.empty_like(raw)
            up[0] = raw[0] - prev
            up[1:] = raw[1:] - raw[:-1]
            prev = raw[-1].copy()
            filt = np.hstack([np.full((y1 - y0, 1), 2, np.uint8), up])
            data = comp.compress(filt.tobytes())
            if data:
                fh.write(_png_chunk(b"IDAT", data))
        fh.write(_png_chunk(b"IDAT", comp.flush()) + _png_chunk(b"IEND", b""))
