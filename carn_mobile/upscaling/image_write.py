"""Writing :class:`~.image.ImageData` as PNG, JPEG or WebP (atomically), and to Pillow images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_output
from .image import FORMATS, ImageData, to_8bit
from .png16 import write_png16


def icc_colour_space(profile: bytes | None) -> str | None:
    """Colour space signature of an ICC profile header (``'RGB'``, ``'GRAY'``, ``'CMYK'``...)."""
    if not profile or len(profile) < 20:
        return None
    return profile[16:20].decode("ascii", "replace").strip()


def _compatible_icc(profile: bytes | None, gray: bool, notes: list[str] | None = None) -> bytes | None:
    space = icc_colour_space(profile)
    if space is None:
        return None
    if space == ("GRAY" if gray else "RGB"):
        return profile
    if notes is not None:
        notes.append(f"ICC profile ({space}) dropped: it does not describe a {'gray' if gray else 'RGB'} output")
    return None


def to_pil(data: ImageData) -> Image.Image:
    """:class:`ImageData` (8 or 16 bit) -> Pillow image, ICC profile in ``info``.

    Pillow has no 16-bit colour or gray+alpha modes, so those come back as 8 bits; 16-bit
    gray without alpha stays ``I;16``.
    """
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
    icc = _compatible_icc(data.icc_profile, data.gray)
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

