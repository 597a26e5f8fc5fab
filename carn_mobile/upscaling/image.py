"""The pixels the upscaler works on (:class:`ImageData`), its errors, formats and limits.

Colour is ``H x W x 1`` (grayscale) or ``H x W x 3`` (RGB) pixels, with an optional ``H x W``
alpha plane, both ``uint8`` or ``uint16`` (``float32`` for float arrays given to the Python
API), plus the ICC profile and notes about anything converted on the way. Reading lives in
:mod:`.image_read`, writing in :mod:`.image_write`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

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

