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

A fixed-shape artifact (an NPU or GPU program, ``--shape 128x128``) takes boxes of exactly one
size instead: :func:`plan_fixed_tiles` keeps that size for every box and shifts a box that would
cross the border inward, so it ends at the border. The same plan is written in Kotlin for apps
(``export/samples/CarnTiling.kt``; ``tests/test_kotlin_tiling.py`` holds the two equal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..metrics import to_uint8

if TYPE_CHECKING:
    from ..runtimes import ShapeSpec
    from .receptive_field import ReceptiveField

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
    if height < 1 or width < 1:
        raise ValueError(f"the image must be at least 1x1, got {height}x{width}")
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


def core_tile(height: int, width: int, tile: int | None, overlap: int, max_side: int | None) -> int | None:
    """The core tile side for a model that takes any size up to ``max_side`` LR pixels (``None``:
    no bound): ``tile`` (``None``: the whole image), made small enough that a box with its overlap
    fits in ``max_side``; ``None`` when one tile would cover the image anyway."""
    if tile is not None and tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    if max_side is not None and max(height, width) > max_side:
        cap = max_side - 2 * overlap
        if cap < 1:
            raise ValueError(f"an artifact that accepts LR sides up to {max_side} leaves no core after an overlap "
                             f"of {overlap} px on each side")
        if tile is None or tile > cap:
            tile = cap
    return None if tile is not None and tile >= max(height, width) else tile


def split_fixed(length: int, box: int, overlap: int) -> list[tuple[int, int, int]]:
    """Cut ``[0, length)`` into cores read through boxes of exactly ``box`` pixels: a list of
    ``(box_start, core_start, core_end)``.

    A box adds ``overlap`` pixels on each side of its core, except at the image border, where
    the network's own padding is the real one; so an edge core may be ``box - overlap`` long and
    an inner one ``box - 2 * overlap``. That gives the fewest boxes,
    ``ceil((length - 2 * overlap) / (box - 2 * overlap))``, and the inner parts are near-equal
    (as :func:`split`). A box is placed at ``core_start - overlap`` and shifted inward where that
    would leave the image. Raises ``ValueError`` when ``length < box`` (a fixed-size model
    cannot read a smaller image) or ``box <= 2 * overlap`` (no core would be left).
    """
    if length < 1 or box < 1 or overlap < 0:
        raise ValueError(f"length and box must be positive and overlap >= 0, got {length}, {box} and {overlap}")
    if length < box:
        raise ValueError(f"an image side of {length} px is smaller than the fixed tile of {box} px")
    if box <= 2 * overlap:
        raise ValueError(f"a fixed tile of {box} px leaves no core after an overlap of {overlap} px on each side")
    n = math.ceil((length - 2 * overlap) / (box - 2 * overlap))
    inner = [overlap + (i * (length - 2 * overlap)) // n for i in range(n + 1)]
    inner[0], inner[-1] = 0, length
    return [(min(max(c0 - overlap, 0), length - box), c0, c1) for c0, c1 in zip(inner, inner[1:], strict=False)]


def plan_fixed_tiles(height: int, width: int, tile_height: int, tile_width: int, overlap: int) -> list[Tile]:
    """Tiles whose boxes are all exactly ``tile_height x tile_width`` LR pixels (a fixed-shape
    artifact), row by row; see :func:`split_fixed` for the rule and the refusals."""
    rows = split_fixed(height, tile_height, overlap)
    cols = split_fixed(width, tile_width, overlap)
    return [Tile(y0, y0 + tile_height, x0, x0 + tile_width, cy0, cy1, cx0, cx1)
            for y0, cy0, cy1 in rows for x0, cx0, cx1 in cols]


def tiling_record(field: ReceptiveField, shape: ShapeSpec) -> dict[str, Any]:
    """The manifest's ``tiling`` section: what an app needs to tile exactly with the artifact.

    ``fixed_tile`` is the one LR size a fixed-shape artifact takes (the largest of an enumerated
    one), ``None`` when it takes any size up to ``max_side`` (``None``: no bound).
    """
    fixed = None
    if shape.kind != "dynamic":
        fixed = list(max(shape.sizes, key=lambda hw: hw[0] * hw[1]))
    return {
        "overlap": field.overlap,
        "receptive_field_radius": round(float(field.radius), 4),
        "fixed_tile": fixed,
        "max_side": shape.max_side if shape.kind == "dynamic" else None,
        "rule": "near-equal cores, each read with `overlap` LR px around it; boxes clipped at the border, "
                "or for a fixed tile kept at its size and shifted inward (carn_mobile.upscaling.tiling)",
    }


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
