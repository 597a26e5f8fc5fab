"""Validation PSNR during training, with the evaluation protocol of ``carn-eval``.

The validation images are read (and their LR made) once and kept in memory; each
validation runs :func:`carn_mobile.evaluate.evaluate_dataset` on them, so training
curves use exactly the numbers ``carn-eval`` would report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import IMAGE_SUFFIXES, BenchmarkPair, BenchmarkSet, load_rgb
from ..evaluate import evaluate_dataset
from ..imresize import bicubic_downscale, imresize, modcrop
from ..metrics import evaluate_pair


class ImageFolderSet:
    """A plain folder of HR images used as a benchmark set; LR is made with the MATLAB bicubic."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.name = self.root.name
        self.hr_files = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.hr_files:
            raise FileNotFoundError(f"validation folder {self.root} holds no images (nor an HR/ folder)")

    def __len__(self) -> int:
        return len(self.hr_files)

    def pairs(self, scale: int) -> Iterator[BenchmarkPair]:
        for path in self.hr_files:
            hr = modcrop(load_rgb(path), scale)
            yield BenchmarkPair(path.stem, hr, bicubic_downscale(hr, scale), True)


def open_val_set(path: str | os.PathLike) -> BenchmarkSet | ImageFolderSet:
    """``DIR/HR`` (+ ``DIR/LR_bicubic``) benchmark layout, else a plain folder of images."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"validation folder {p} does not exist or is not a folder")
    return BenchmarkSet(p) if (p / "HR").is_dir() else ImageFolderSet(p)


class _MemorySet:
    """Pairs of one set held in memory, with the ``name``/``pairs`` interface evaluate_dataset uses."""

    def __init__(self, name: str, pairs: dict[int, list[BenchmarkPair]]) -> None:
        self.name = name
        self._pairs = pairs

    def __len__(self) -> int:
        return len(next(iter(self._pairs.values())))

    def pairs(self, scale: int) -> Iterator[BenchmarkPair]:
        return iter(self._pairs[scale])


def metric_key(set_name: str, scale: int) -> str:
    """Column name of one validation PSNR, e.g. ``Set5_x4``."""
    return f"{set_name}_x{scale}"


class Validator:
    """Mean PSNR (Y channel, border = scale) of a model on validation sets at every training scale."""

    def __init__(self, folders: Sequence[str | os.PathLike], scales: Sequence[int]) -> None:
        self.scales = tuple(scales)
        self.sets: list[_MemorySet] = []
        names: set[str] = set()
        for folder in folders:
            ds = open_val_set(folder)
            name = ds.name
            while name in names:  # two folders with the same base name stay apart in the log
                name += "_"
            names.add(name)
            self.sets.append(_MemorySet(name, {s: list(ds.pairs(s)) for s in self.scales}))

    def __bool__(self) -> bool:
        return bool(self.sets)

    @property
    def keys(self) -> list[str]:
        return [metric_key(ds.name, s) for ds in self.sets for s in self.scales]

    @torch.no_grad()
    def run(self, model: nn.Module) -> dict[str, float]:
        """PSNR per ``Set_xS`` key; the model is put in eval mode and back in train mode after.

        ``evaluate.super_resolve`` feeds the model on its own device, so GPU models work as is.
        """
        was_training = model.training
        model.eval()
        try:
            return {
                metric_key(ds.name, s): evaluate_dataset(model, ds, s, "val").psnr
                for ds in self.sets
                for s in self.scales
            }
        finally:
            model.train(was_training)

    def bicubic(self) -> dict[str, float]:
        """The same PSNRs for MATLAB-bicubic upscaling: the baseline a model must beat."""
        out = {}
        for ds in self.sets:
            for s in self.scales:
                scores = [evaluate_pair(imresize(p.lr, s), p.hr, s)[0] for p in ds.pairs(s)]
                out[metric_key(ds.name, s)] = float(np.mean(scores))
        return out
