"""Calibration data for int8: LR patches made the way training makes them, never from the test sets.

A patch is a random HR crop of ``patch * scale`` pixels per side, taken down to ``patch`` with
the MATLAB-exact bicubic (:func:`carn_mobile.imresize.bicubic_downscale`), exactly like a
training input. The source is a folder of training-style images (searched recursively) or,
by default, the built-in procedural images (:mod:`.synthetic`). Everything is deterministic
for a seed, and the set's SHA-256 goes into each manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import IMAGE_SUFFIXES, load_rgb
from ..imresize import bicubic_downscale
from .synthetic import calibration_image

#: Defaults: enough patches that the ranges settle (see docs/int8.md), few enough to stay quick.
DEFAULT_COUNT = 64
DEFAULT_PATCH = 48
#: Fewer patches than this cannot pin down 70 activation ranges.
MIN_COUNT = 8
#: Folder names that hold evaluation images: calibrating on them would flatter the PSNR gate.
EVALUATION_SETS = ("set5", "set14", "b100", "bsd100", "urban100", "manga109", "div2k_valid")

BUILT_IN = "built-in procedural images"


class CalibrationError(ValueError):
    """The calibration source cannot give the patches asked for (the message says what to do)."""


@dataclass(frozen=True)
class CalibrationSet:
    """The patches for one scale, with what the manifest records about them."""

    scale: int
    patches: tuple[np.ndarray, ...]  # each (1, 3, patch, patch) float32 in [0, 1]
    source: str
    images: int  # distinct source images the patches came from
    seed: int

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for p in self.patches:
            digest.update(np.ascontiguousarray(p, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "patches": len(self.patches), "images": self.images,
                "patch_lr": list(self.patches[0].shape[2:]), "scale": self.scale, "seed": self.seed,
                "degradation": "MATLAB bicubic", "sha256": self.sha256}


@dataclass(frozen=True)
class CalibrationSource:
    """Where calibration patches come from: ``folder`` (``None``: built-in), how many, how big."""

    folder: Path | None = None
    count: int = DEFAULT_COUNT
    patch: int = DEFAULT_PATCH
    seed: int = 0
    _cache: dict[int, CalibrationSet] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.count < MIN_COUNT:
            raise CalibrationError(f"--calibration-images {self.count} is too few; use at least {MIN_COUNT}")
        if self.patch < 8:
            raise CalibrationError(f"calibration patches of {self.patch} px are too small; use at least 8")
        if self.folder is not None:
            object.__setattr__(self, "folder", Path(self.folder))
            self.image_files()  # fail now, before any export starts

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> CalibrationSource:
        """The source a manifest's calibration record describes (:meth:`CalibrationSet.to_json`)."""
        try:
            folder = None if record["source"] == BUILT_IN else Path(record["source"])
            count, patch, seed = int(record["patches"]), int(record["patch_lr"][0]), int(record["seed"])
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"the manifest's calibration record is incomplete ({exc})") from None
        return cls(folder, count, patch, seed)  # a folder gone since the export: CalibrationError

    def image_files(self) -> list[Path]:
        """The folder's images, sorted; :class:`CalibrationError` when there are none."""
        assert self.folder is not None
        if not self.folder.is_dir():
            raise CalibrationError(f"calibration folder {self.folder} does not exist; pass a folder of training images")
        parts = {p.lower() for p in self.folder.resolve().parts}
        evaluation = parts.intersection(EVALUATION_SETS)
        if evaluation:
            raise CalibrationError(f"{self.folder} is an evaluation set ({sorted(evaluation)[0]}); calibrate on "
                                   "training images (e.g. T91, BSD200, DIV2K train), never on what the gate measures")
        files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise CalibrationError(f"calibration folder {self.folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files

    def for_scale(self, scale: int) -> CalibrationSet:
        """The patches for ``scale`` (made once, then cached)."""
        if scale not in self._cache:
            self._cache[scale] = self._built_in(scale) if self.folder is None else self._from_folder(scale)
        return self._cache[scale]

    def _built_in(self, scale: int) -> CalibrationSet:
        side = self.patch * scale
        patches = tuple(_to_patch(bicubic_downscale(calibration_image(side, side, self.seed * 100_003 + i), scale))
                        for i in range(self.count))
        return CalibrationSet(scale, patches, BUILT_IN, self.count, self.seed)

    def _from_folder(self, scale: int) -> CalibrationSet:
        side = self.patch * scale
        rng = np.random.default_rng(self.seed)
        files = self.image_files()
        usable = [files[i] for i in rng.permutation(len(files)) if min(_size(files[i])) >= side]
        if not usable:
            raise CalibrationError(f"no image in {self.folder} is at least {side}x{side} pixels (an LR patch of "
                                   f"{self.patch} at x{scale}); add larger training images")
        loaded: dict[Path, np.ndarray] = {}
        patches = []
        for i in range(self.count):  # one patch per image per round, so few images still give many
            path = usable[i % len(usable)]
            if path not in loaded:
                loaded[path] = _read(path)
            image = loaded[path]
            top = int(rng.integers(0, image.shape[0] - side + 1))
            left = int(rng.integers(0, image.shape[1] - side + 1))
            patches.append(_to_patch(bicubic_downscale(image[top:top + side, left:left + side], scale)))
        return CalibrationSet(scale, tuple(patches), str(self.folder), len(loaded), self.seed)


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding it."""
    from PIL import Image

    def header() -> tuple[int, int]:
        with Image.open(path) as im:
            return im.size

    return _readable(path, header)


def _read(path: Path) -> np.ndarray:
    return _readable(path, lambda: load_rgb(path))


def _readable(path: Path, read):
    """``read()``, or a :class:`CalibrationError` naming ``path`` when the file is no image."""
    try:
        return read()
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"calibration image {path} cannot be read ({type(exc).__name__}); "
                               "remove it or pick another folder") from None


def _to_patch(lr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
