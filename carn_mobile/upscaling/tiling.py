"""Exact tiled upscaling: split the LR image, run each tile with an overlap, stitch the cores.

Why it is exact: a CARN's convolutions zero-pad at the edges of whatever they are given. A
tile's outer pixels therefore differ from the full image's (the padding sits where real
pixels should be), but the error moves inwards by at most the receptive-field radius. With
an overlap of at least that radius (rounded up, in LR pixels) the tile's *core* sees exactly
the values the full image would, and where a tile touches the real image border the padding
is the same as for the full image. Cropping each tile's HR output to its core and placing
the cores side by side rebuilds the untiled output (up to float rounding of different conv
kernel blockings, far below 1e-5).

Tiles are near-equal in size (a 100-pixel side split with ``tile=48`` gives 34/33/33, not
48/48/4), so no sliver tile wastes a whole overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..metrics import to_uint8

#: ``fn(tile)`` maps an ``h x w x C`` float32 LR tile to an ``h*s x w*s x C'`` float32 HR tile.
TileFn = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Tile:
    """One tile: the LR box read from the image and the LR core it is responsible for."""

    y0: int
    y1: int
    x0: int
    x1: int
    core_y0: int
    core_y1: int
    core_x0: int
    core_x1: int


def split(length: int, tile: int) -> list[tuple[int, int]]:
    """Cut ``[0, length)`` into ``ceil(length / tile)`` contiguous near-equal parts."""
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be positive, got {length} and {tile}")
    n = math.ceil(length / tile)
    bounds = [(i * length) // n for i in range(n + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n)]


def plan_tiles(height: int, width: int, tile: int | None, overlap: int) -> list[Tile]:
    """Tiles with cores of at most ``tile x tile`` LR pixels, each read with ``overlap`` around.

    ``tile=None`` gives one tile, the whole image. Boxes are clipped at the image border,
    where the network's own zero padding then matches the untiled run.
    """
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile is None:
        return [Tile(0, height, 0, width, 0, height, 0, width)]
    tiles = []
    for cy0, cy1 in split(height, tile):
        for cx0, cx1 in split(width, tile):
            tiles.append(
                Tile(
                    max(cy0 - overlap, 0),
                    min(cy1 + overlap, height),
                    max(cx0 - overlap, 0),
                    min(cx1 + overlap, width),
                    cy0,
                    cy1,
                    cx0,
                    cx1,
                )
            )
    return tiles


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float pixels -> float32 in [0, 1] (floats are taken as already scaled)."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255)
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(65535)
    if np.issubdtype(pixels.dtype, np.floating):
        return pixels.astype(np.float32, copy=False)
    raise TypeError(f"unsupported pixel dtype {pixels.dtype}")


def from_float(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float [0, 1] -> ``dtype``: round half up and clamp for integers, unchanged for float32."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return to_uint8(x)
    if dtype == np.uint16:
        return np.floor(np.clip(x.astype(np.float64), 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    if dtype == np.float32:
        return x.astype(np.float32, copy=False)
    raise TypeError(f"unsupported output dtype {dtype}")


def iter_tiles(tiles: list[Tile], progress: Progress | None) -> Iterator[Tile]:
    for i, t in enumerate(tiles):
        yield t
        if progress is not None:
            progress(i + 1, len(tiles))


def run_tiled(
    fn: TileFn,
    src: np.ndarray,
    scale: int,
    tiles: list[Tile],
    out_channels: int,
    out_dtype: np.dtype | type = np.float32,
    progress: Progress | None = None,
) -> np.ndarray:
    """Apply ``fn`` tile by tile to ``src`` (``H x W x C``) and stitch an ``sH x sW x C'`` result.

    Each tile is converted to float only when it is read and quantised to ``out_dtype`` as
    soon as it is written, so memory holds the input, the output and one tile's work.
    ``out_dtype=float32`` keeps the raw, unclamped values (what the equality tests compare).
    """
    if src.ndim != 3:
        raise ValueError(f"expected an H x W x C array, got shape {src.shape}")
    h, w = src.shape[:2]
    out = np.empty((h * scale, w * scale, out_channels), dtype=out_dtype)
    for t in iter_tiles(tiles, progress):
        hr = fn(to_float(src[t.y0 : t.y1, t.x0 : t.x1]))
        expected = ((t.y1 - t.y0) * scale, (t.x1 - t.x0) * scale, out_channels)
        if hr.shape != expected:
            raise RuntimeError(f"tile function returned shape {hr.shape}, expected {expected}")
        oy, ox = (t.core_y0 - t.y0) * scale, (t.core_x0 - t.x0) * scale
        ch, cw = (t.core_y1 - t.core_y0) * scale, (t.core_x1 - t.core_x0) * scale
        out[t.core_y0 * scale : t.core_y1 * scale, t.core_x0 * scale : t.core_x1 * scale] = from_float(
            hr[oy : oy + ch, ox : ox + cw], out.dtype
        )
    return out
