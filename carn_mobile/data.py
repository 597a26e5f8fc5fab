"""Image loading and the benchmark-set layout (``HR/`` + optional ``LR_bicubic/X{s}/``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .imresize import bicubic_downscale, modcrop

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


def shared_data_root() -> Path | None:
    """The project's shared data folder (Set5, Set14, training images), or ``None``.

    ``$CARN_SHARED`` when set; else a ``shared/`` folder beside the working directory or one of
    its parents (a checkout's ``../shared`` when a tool runs from the checkout), else beside the
    source checkout this package was imported from. An installed copy finds it the same way.
    """
    env = os.environ.get("CARN_SHARED")
    if env:
        return Path(env) if Path(env).is_dir() else None
    cwd = Path.cwd().resolve()
    source_checkout = Path(__file__).resolve().parents[1]
    for folder in (cwd, *cwd.parents, source_checkout.parent):
        candidate = folder / "shared"
        if (candidate / "data").is_dir():
            return candidate
    return None


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image as uint8 RGB (grayscale and palette images are expanded to RGB)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


@dataclass(frozen=True)
class BenchmarkPair:
    """One test image: its name, HR (cropped to a multiple of the scale) and LR, uint8 RGB."""

    name: str
    hr: np.ndarray
    lr: np.ndarray
    lr_generated: bool


class BenchmarkSet:
    """A folder with ``HR/<name>.png`` and optionally ``LR_bicubic/X{s}/<name>x{s}.png``.

    When an LR file is absent it is made from HR with the MATLAB-exact bicubic.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        hr_dir = self.root / "HR"
        if not hr_dir.is_dir():
            raise FileNotFoundError(f"{self.root} has no HR/ folder (expected DIR/HR/<name>.png)")
        self.hr_files = sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.hr_files:
            raise FileNotFoundError(f"{hr_dir} holds no images")
        self.name = self.root.name

    def __len__(self) -> int:
        return len(self.hr_files)

    def lr_path(self, stem: str, scale: int) -> Path:
        return self.root / "LR_bicubic" / f"X{scale}" / f"{stem}x{scale}.png"

    def pairs(self, scale: int):
        """Yield a :class:`BenchmarkPair` per HR image at ``scale``."""
        for hr_path in self.hr_files:
            hr = modcrop(load_rgb(hr_path), scale)
            lr_file = self.lr_path(hr_path.stem, scale)
            if lr_file.is_file():
                lr, generated = load_rgb(lr_file), False
                expected = (hr.shape[0] // scale, hr.shape[1] // scale)
                if lr.shape[:2] != expected:
                    raise ValueError(
                        f"{lr_file} is {lr.shape[1]}x{lr.shape[0]}, expected "
                        f"{expected[1]}x{expected[0]} for HR {hr_path.name} at x{scale}"
                    )
            else:
                lr, generated = bicubic_downscale(hr, scale), True
            yield BenchmarkPair(hr_path.stem, hr, lr, generated)
