"""The Python API: :class:`Upscaler` and the one-call :func:`upscale`."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
from PIL import Image

from ..fileio import check_writable
from ..imresize import imresize
from ..models import CARN, check_scale
from . import image_read, image_write
from .backends import Backend, create_backend
from .image import DEFAULT_MAX_PIXELS, FORMATS, ImageData, ImageError, check_min_size, format_for, gray_from_rgb
from .memory import DEFAULT_MAX_MEMORY, auto_tile, estimate_bytes, format_bytes, parse_bytes, parse_count
from .receptive_field import ReceptiveField, receptive_field
from .tiling import Progress, Tile, core_tile, plan_tiles, run_tiled

log = logging.getLogger("carn_mobile.upscaling")

#: Bicubic (Keys, a = -0.5) reads 2 pixels either side plus one for MATLAB's tap alignment.
ALPHA_OVERLAP = 3

ImageLike = TypeVar("ImageLike", Image.Image, np.ndarray, str, os.PathLike)
TileSpec = int | Literal["auto"] | None


class ApproximateTilingWarning(UserWarning):
    """The overlap is below the receptive field: tiles will not match the untiled result exactly."""


@dataclass(frozen=True)
class TilePlan:
    """How one image is cut: ``tile=None`` means a single call on the whole image."""

    tile: int | None
    overlap: int
    tiles: list[Tile]
    auto: bool
    estimated_bytes: int  # of the largest single network call
    #: The backend's largest accepted LR side, when that (not memory) made the tiles this small.
    side_limit: int | None = None


@dataclass
class UpscaleReport:
    """What happened to one image."""

    input_size: tuple[int, int]  # (width, height)
    output_size: tuple[int, int]
    scale: int
    tile: int | None
    overlap: int
    tiles: int
    auto_tiled: bool
    estimated_bytes: int
    notes: list[str] = field(default_factory=list)
    output: Path | None = None


class Upscaler:
    """A model at one scale, ready to upscale images, arrays and files.

    Args:
        scale: upscaling factor; the model must have it (the shipped CARN-M: 2, 3, 4).
        model: a registered name (``"carn-m"``) or a ``CARN`` module (its weights as they are).
        weights: shipped weights name or checkpoint file (with a model name only).
        backend: inference engine, one of ``available_backends()``; ``None`` (default): ``torch``
            for fp32, the fastest installed artifact backend for the other precisions.
        precision: ``fp32`` (default), ``fp16`` or ``int8``: a reduced precision runs a cached,
            parity- and quality-gated export of the model (``choose_backend``); the quality gate's
            measured drop is logged once.
        tile: core tile side in LR pixels; ``"auto"`` (default) tiles only when the
            estimated activation memory of one call exceeds ``max_memory``; ``None`` or 0
            never tiles.
        overlap: LR pixels read around each tile; default the receptive field, which makes
            tiles exact. Smaller values warn with :class:`ApproximateTilingWarning`.
        max_memory: budget for one network call's activations, bytes or ``"512M"``, ``"2G"``.
        max_pixels: largest input file in pixels (``"50M"``); 0 disables the guard.
        device: torch device for the torch backend.
    """

    def __init__(
        self,
        scale: int = 4,
        model: str | CARN | None = "carn-m",
        *,
        weights: str | os.PathLike | None = None,
        backend: str | None = None,
        precision: str = "fp32",
        tile: TileSpec = "auto",
        overlap: int | None = None,
        max_memory: int | str = DEFAULT_MAX_MEMORY,
        max_pixels: int | str = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
    ) -> None:
        scale = check_scale(scale)
        if tile == 0:
            tile = None
        if tile is not None and tile != "auto" and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
            raise ValueError(f"tile must be a positive number of LR pixels, 'auto' or None, got {tile!r}")
        self.scale = int(scale)
        self.tile: TileSpec = tile
        self.max_memory = parse_bytes(max_memory)
        self.max_pixels = parse_count(max_pixels)
        self.backend: Backend = create_backend(backend, model=model, weights=weights, scale=self.scale, device=device,
                                               precision=precision)
        self.receptive_field: ReceptiveField = receptive_field(self.backend.config, self.scale)
        if overlap is None:
            overlap = self.receptive_field.overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
            raise ValueError(f"overlap must be a non-negative number of LR pixels, got {overlap!r}")
        self.overlap = overlap
        if overlap < self.receptive_field.overlap:
            warnings.warn(self.overlap_warning(), ApproximateTilingWarning, stacklevel=2)

    @property
    def exact(self) -> bool:
        """Whether tiles reproduce the untiled result (overlap >= receptive field)."""
        return self.overlap >= self.receptive_field.overlap

    def overlap_warning(self) -> str:
        rf = self.receptive_field
        return (
            f"overlap {self.overlap} is below the receptive field (radius {float(rf.radius):.2f} LR px at "
            f"x{self.scale}, overlap {rf.overlap} needed): tiled results will differ from untiled ones near tile seams"
        )

    # ------------------------------------------------------------------ planning

    def plan(self, height: int, width: int) -> TilePlan:
        """Tiles for an ``height x width`` LR image under this upscaler's settings."""
        cfg = self.backend.config
        auto = False
        if self.tile == "auto":
            tile = auto_tile(cfg, self.scale, height, width, self.overlap, self.max_memory)
            auto = tile is not None
        else:
            tile = self.tile  # type: ignore[assignment]
        max_side = getattr(self.backend, "max_side", None)
        try:
            chosen = core_tile(height, width, tile, self.overlap, max_side)
        except ValueError as exc:
            raise ValueError(f"the {self.backend.name} backend: {exc}; use another backend") from None
        # The artifact's side limit (not memory or the caller) made the tiles this small.
        side_limit = max_side if chosen is not None and chosen != tile else None
        tile = chosen
        tiles = plan_tiles(height, width, tile, self.overlap)
        biggest = max((t.y1 - t.y0) * (t.x1 - t.x0) for t in tiles)
        # The estimate is linear in the area, so the largest box read decides.
        est = estimate_bytes(cfg, self.scale, 1, biggest)
        return TilePlan(tile, self.overlap, tiles, auto, est, side_limit)

    def describe_plan(self, plan: TilePlan, height: int, width: int) -> str | None:
        """A sentence on the tiling, or ``None`` when the image is run whole."""
        if plan.tile is None:
            return None
        rf = self.receptive_field
        what = (
            f"{len(plan.tiles)} tiles of up to {plan.tile}x{plan.tile} LR px, overlap {plan.overlap} "
            f"(receptive field radius {float(rf.radius):.2f} LR px)"
        )
        if plan.side_limit is not None:
            return (f"tiling: the {self.backend.name} artifact accepts LR sides up to {plan.side_limit}; {what}, "
                    f"about {format_bytes(plan.estimated_bytes)} per tile")
        if plan.auto:
            full = estimate_bytes(self.backend.config, self.scale, height, width)
            return (
                f"tiling automatically: one call on the whole image needs about {format_bytes(full)}, over "
                f"--max-memory {format_bytes(self.max_memory)}; {what}, "
                f"about {format_bytes(plan.estimated_bytes)} per tile"
            )
        return f"tiling: {what}"

    # ------------------------------------------------------------------ running

    def upscale_data(self, data: ImageData, progress: Progress | None = None) -> tuple[ImageData, UpscaleReport]:
        """Upscale :class:`ImageData`: colour through the network, alpha bicubically."""
        check_min_size(data.width, data.height)
        h, w, s = data.height, data.width, self.scale
        plan = self.plan(h, w)
        notes = list(data.notes)
        sentence = self.describe_plan(plan, h, w)
        if sentence:
            notes.append(sentence)
            log.info(sentence)
        gray = data.gray

        def network(tile: np.ndarray) -> np.ndarray:
            rgb = np.repeat(tile, 3, axis=2) if gray else tile
            sr = self.backend.run(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]))[0].transpose(1, 2, 0)
            return gray_from_rgb(sr) if gray else sr

        pixels = run_tiled(network, data.pixels, s, plan.tiles, data.pixels.shape[2], data.pixels.dtype, progress)
        alpha = None
        if data.alpha is not None:
            # Bicubic with the same tile cores: exact at any tiling, since it only reads
            # ALPHA_OVERLAP pixels around each output.
            alpha_tiles = plan_tiles(h, w, plan.tile, ALPHA_OVERLAP)
            alpha = run_tiled(
                lambda t: imresize(t[..., 0].astype(np.float64), s)[..., None].astype(np.float32),
                data.alpha[..., None],
                s,
                alpha_tiles,
                1,
                data.alpha.dtype,
            )[..., 0]
        if pixels.dtype == np.float32:  # float arrays from the API: return valid [0, 1] images
            np.clip(pixels, 0.0, 1.0, out=pixels)
            if alpha is not None:
                np.clip(alpha, 0.0, 1.0, out=alpha)
        out = data.with_pixels(pixels, alpha)
        out.notes = notes
        report = UpscaleReport(
            input_size=(w, h),
            output_size=(w * s, h * s),
            scale=s,
            tile=plan.tile,
            overlap=plan.overlap,
            tiles=len(plan.tiles),
            auto_tiled=plan.auto,
            estimated_bytes=plan.estimated_bytes,
            notes=notes,
        )
        return out, report

    def upscale(self, image: ImageLike) -> ImageLike:
        """Upscale a Pillow image, a NumPy array or a file path; returns the same kind.

        A path is written to ``<stem>_x{scale}.<ext>`` beside it (see :meth:`upscale_file`)
        and that output path is returned.
        """
        if isinstance(image, Image.Image):
            out, _ = self.upscale_data(image_read.from_pil(image))
            return image_write.to_pil(out)  # type: ignore[return-value]
        if isinstance(image, np.ndarray):
            data, layout = array_to_data(image)
            out, _ = self.upscale_data(data)
            return data_to_array(out, layout)  # type: ignore[return-value]
        if isinstance(image, (str, os.PathLike)):
            return self.upscale_file(image).output  # type: ignore[return-value]
        raise TypeError(f"expected a PIL image, a NumPy array or a path, got {type(image).__name__}")

    def upscale_file(
        self,
        src: str | os.PathLike,
        dst: str | os.PathLike | None = None,
        *,
        format: str | None = None,
        quality: int = 95,
        force: bool = False,
        progress: Progress | None = None,
    ) -> UpscaleReport:
        """Read ``src``, upscale it and write ``dst`` atomically (never over ``src``).

        ``dst`` defaults to ``<stem>_x{scale}.<ext>`` beside ``src``; the format defaults to
        ``dst``'s suffix, else the input's suffix when it is png/jpg/webp, else png.
        An existing ``dst`` is only replaced with ``force``.
        """
        src_path = Path(src)
        fmt = format or (format_for(dst) if dst is not None else format_for(src_path))
        if fmt not in FORMATS:
            raise ValueError(f"unsupported output format {fmt!r}; use one of {', '.join(FORMATS)}")
        dst_path = Path(dst) if dst is not None else default_output(src_path, self.scale, fmt)
        if same_file(src_path, dst_path):
            raise ImageError(f"output {dst_path} is the input file itself; refusing to overwrite an input")
        check_writable(dst_path, force)  # fail before decoding and running the network
        data = image_read.read_image(src_path, self.max_pixels)
        out, report = self.upscale_data(data, progress)
        report.notes += image_write.write_image(out, dst_path, fmt, quality=quality, force=force)
        report.output = dst_path
        return report


def default_output(src: Path, scale: int, fmt: str, out_dir: Path | None = None) -> Path:
    """``<stem>_x{scale}.<ext>`` in ``out_dir`` (default: beside ``src``)."""
    return (out_dir if out_dir is not None else src.parent) / f"{src.stem}_x{scale}.{fmt}"


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (resolving links); false if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


# ---------------------------------------------------------------------- NumPy arrays

_Layout = tuple[np.dtype, int]  # the input's dtype and ndim, restored on the way out


def array_to_data(arr: np.ndarray) -> tuple[ImageData, _Layout]:
    """``H x W``, ``H x W x {1,2,3,4}`` arrays (uint8, uint16, float in [0, 1]) -> ImageData."""
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected an H x W or H x W x C (C = 1..4) array, got shape {arr.shape}")
    dtype = arr.dtype
    if dtype == np.uint8 or dtype == np.uint16:
        work = arr
    elif np.issubdtype(dtype, np.floating):
        work = arr.astype(np.float32)
        if not np.isfinite(work).all():
            raise ValueError("float image contains NaN or infinity")
        if work.size and (work.min() < 0.0 or work.max() > 1.0):
            raise ValueError(f"float images must be within [0, 1], got [{work.min():g}, {work.max():g}]")
    else:
        raise TypeError(f"unsupported array dtype {dtype}; use uint8, uint16 or float in [0, 1]")
    check_min_size(arr.shape[1], arr.shape[0])
    a3 = work[..., None] if work.ndim == 2 else work
    c = a3.shape[2]
    color = a3[..., : (1 if c <= 2 else 3)]
    alpha = a3[..., -1] if c in (2, 4) else None
    data = ImageData(np.ascontiguousarray(color), None if alpha is None else np.ascontiguousarray(alpha))
    return data, (dtype, arr.ndim)


def data_to_array(data: ImageData, layout: _Layout) -> np.ndarray:
    """The inverse of :func:`array_to_data`: same dtype and layout as the input array."""
    dtype, ndim = layout
    parts = [data.pixels] + ([data.alpha[..., None]] if data.alpha is not None else [])
    out = np.concatenate(parts, axis=2) if len(parts) > 1 else data.pixels
    if ndim == 2:
        out = out[..., 0]
    return out.astype(dtype, copy=False)


# ---------------------------------------------------------------------- one call


def upscale(
    image: ImageLike,
    scale: int = 4,
    model: str | CARN | None = "carn-m",
    *,
    weights: str | os.PathLike | None = None,
    backend: str | None = None,
    precision: str = "fp32",
    tile: TileSpec = "auto",
    overlap: int | None = None,
    max_memory: int | str = DEFAULT_MAX_MEMORY,
    max_pixels: int | str = DEFAULT_MAX_PIXELS,
    output: str | os.PathLike | None = None,
    format: str | None = None,
    quality: int = 95,
    force: bool = False,
) -> ImageLike:
    """Super-resolve ``image`` by ``scale`` with a CARN; returns the same kind it was given.

    * ``PIL.Image`` -> ``PIL.Image`` (L, LA, RGB, RGBA, I;16 kept; P -> RGB/RGBA; CMYK -> RGB),
      EXIF orientation applied, ICC profile kept in ``info``;
    * ``numpy`` ``H x W [x C]`` uint8 / uint16 / float in [0, 1] -> same dtype and layout;
    * a path -> the path written (``output``, default ``<stem>_x{scale}.<ext>`` beside it;
      existing files are only replaced with ``force``).

    Colour goes through the network, alpha is upscaled bicubically. Large images are tiled
    exactly (see :class:`Upscaler` for ``backend``, ``precision``, ``tile``, ``overlap``,
    ``max_memory``, ``max_pixels``).
    Shipped weights load once and are cached between calls.
    """
    up = Upscaler(
        scale,
        model,
        weights=weights,
        backend=backend,
        precision=precision,
        tile=tile,
        overlap=overlap,
        max_memory=max_memory,
        max_pixels=max_pixels,
    )
    if isinstance(image, (str, os.PathLike)):
        return up.upscale_file(image, output, format=format, quality=quality, force=force).output  # type: ignore[return-value]
    if output is not None:
        raise ValueError("output= applies to path inputs only")
    return up.upscale(image)


__all__ = [
    "ApproximateTilingWarning",
    "TilePlan",
    "UpscaleReport",
    "Upscaler",
    "array_to_data",
    "data_to_array",
    "default_output",
    "upscale",
]
