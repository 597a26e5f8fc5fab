"""Training images and random patch batches.

HR images are read once; their LR versions are made once per scale with the project's
MATLAB-exact bicubic (optionally cached on disk), then packed into tensors on the training
device (:mod:`.packed`), so a batch is one gather there, flips and rotations included.

All sampling randomness is derived from ``(seed, step, rank)`` through
:func:`step_rng`: batch ``t`` is the same whatever happened before it, which makes
``--resume`` exact and lets every DDP rank agree on the scale of a step without
communicating.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import IMAGE_SUFFIXES, load_rgb
from ..imresize import bicubic_downscale
from .packed import PackedImages

# Part of every cache key: bump it if the LR-making algorithm ever changes.
_LR_ALGORITHM = "matlab-bicubic-v1"

# Streams of step_rng, so the scale draw and the patch draws never share numbers.
_SCALE_STREAM = 0
_PATCH_STREAM = 1


class DataError(ValueError):
    """Training data that cannot be used (missing folder, no images, images too small)."""


def step_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator for ``(seed, *keys)`` (numpy's SeedSequence hashes the keys)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(keys)))


def scale_for_step(seed: int, step: int, scales: Sequence[int]) -> int:
    """The one scale of batch ``step``: the same on every rank, drawn uniformly."""
    if len(scales) == 1:
        return scales[0]
    return int(scales[step_rng(seed, _SCALE_STREAM, step).integers(len(scales))])


def list_images(folders: Sequence[str | os.PathLike]) -> list[Path]:
    """Image files directly inside each folder (sorted by name, folders in the given order)."""
    if not folders:
        raise DataError("no training data folders given")
    files: list[Path] = []
    for folder in folders:
        d = Path(folder)
        if not d.is_dir():
            raise DataError(f"training data folder {d} does not exist or is not a folder")
        found = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"training data folder {d} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += found
    return files


@dataclass
class TrainImage:
    """One HR image and its bicubic LR image per scale (uint8 RGB, H x W x 3)."""

    path: Path
    hr: np.ndarray
    lr: dict[int, np.ndarray]


class LRCache:
    """LR images on disk as ``.npy``, keyed by the HR file's content, the scale and the algorithm.

    Keys come from the file's bytes, so a stale entry cannot be used for a changed image,
    and several runs (or DDP ranks) can share one folder: writes are atomic renames.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str, scale: int) -> Path:
        return self.folder / f"{digest}_x{scale}.npy"

    @staticmethod
    def digest(path: Path) -> str:
        h = hashlib.sha256(_LR_ALGORITHM.encode())
        h.update(path.read_bytes())
        return h.hexdigest()[:40]

    def get(self, digest: str, scale: int, expected_shape: tuple[int, ...]) -> np.ndarray | None:
        p = self._path(digest, scale)
        if not p.is_file():
            return None
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed and overwritten
        return arr if arr.dtype == np.uint8 and arr.shape == expected_shape else None

    def put(self, digest: str, scale: int, lr: np.ndarray) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{digest}_x{scale}.", suffix=".npy.tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, lr, allow_pickle=False)
            os.replace(tmp, self._path(digest, scale))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class TrainImages:
    """The training images of one rank, with LR images for every scale, in memory.

    With ``world_size > 1`` the sorted image list is dealt out round-robin: rank ``r``
    holds images ``r, r + world_size, ...`` (its data shard), so ranks train on
    distinct images and each makes LR images only for its own.

    Images whose LR version at some scale is smaller than ``patch_size`` are left out of
    that scale's sampling (reported in :attr:`skipped`); a scale with no usable image is
    an error.
    """

    def __init__(
        self,
        folders: Sequence[str | os.PathLike],
        scales: Sequence[int],
        patch_size: int,
        rank: int = 0,
        world_size: int = 1,
        cache_dir: str | os.PathLike | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        all_files = list_images(folders)
        if len(all_files) < world_size:
            raise DataError(
                f"{len(all_files)} training images cannot be shared by {world_size} processes "
                "(each rank needs at least one image)"
            )
        self.total_images = len(all_files)
        self.files = all_files[rank::world_size]
        self.scales = tuple(scales)
        self.patch_size = patch_size
        cache = LRCache(cache_dir) if cache_dir else None
        self.images: list[TrainImage] = []
        for i, path in enumerate(self.files):
            self.images.append(_load(path, self.scales, cache))
            if progress is not None:
                progress(i + 1, len(self.files))
        # Per scale, the images large enough for a patch_size LR patch.
        self.eligible: dict[int, np.ndarray] = {}
        self.skipped: dict[int, int] = {}
        for s in self.scales:
            ok = [i for i, im in enumerate(self.images) if min(im.lr[s].shape[:2]) >= patch_size]
            self.skipped[s] = len(self.images) - len(ok)
            if not ok:
                biggest = max(self.images, key=lambda im: min(im.hr.shape[:2]))
                h, w = biggest.hr.shape[:2]
                where = f"rank {rank}'s share of " if world_size > 1 else ""
                raise DataError(
                    f"patch size {patch_size} at x{s} needs HR images of at least {patch_size * s}x{patch_size * s}, "
                    f"but none of {where}the {len(self.images)} training images is that large "
                    f"(largest: {biggest.path.name}, {w}x{h}); use a smaller --patch-size or larger images"
                )
            self.eligible[s] = np.asarray(ok, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def pack(self, device: torch.device | str = "cpu") -> PackedImages:
        """These images as tensors for batched patch cutting, on ``device`` when it has room."""
        return PackedImages([im.hr for im in self.images], {s: [im.lr[s] for im in self.images] for s in self.scales},
                            self.patch_size, self.eligible, device)  # fmt: skip


def _load(path: Path, scales: Sequence[int], cache: LRCache | None) -> TrainImage:
    try:
        hr = load_rgb(path)
    except OSError as exc:
        raise DataError(f"cannot read training image {path}: {exc}") from None
    digest = LRCache.digest(path) if cache else ""
    lrs: dict[int, np.ndarray] = {}
    for s in scales:
        shape = (hr.shape[0] // s, hr.shape[1] // s, 3)
        if min(shape[:2]) < 1:
            raise DataError(f"training image {path} ({hr.shape[1]}x{hr.shape[0]}) is too small for x{s}")
        lr = cache.get(digest, s, shape) if cache else None
        if lr is None:
            lr = bicubic_downscale(hr, s)
            if cache:
                cache.put(digest, s, lr)
        lrs[s] = lr
    return TrainImage(path, hr, lrs)


class PatchBatches(Dataset):
    """Map-style dataset whose item ``t`` is the whole batch of step ``t`` for one rank.

    Returns ``(scale, lr, hr)`` with uint8 NCHW tensors, cut in one batched gather from the
    images packed on ``device`` (:class:`~carn_mobile.train.packed.PackedImages`; the training
    device when it has room, so batches never cross the bus); converting to float happens on the
    training device. Index it directly, or wrap it in ``DataLoader(batch_size=None,
    sampler=range(first_step, steps))`` with CPU-packed images for worker processes.
    """

    def __init__(
        self,
        images: TrainImages,
        batch_size: int,
        seed: int,
        rank: int = 0,
        augment: bool = True,
        steps: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.packed = images.pack(device)
        self.scales = images.scales
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.augment = augment
        self.steps = steps

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("PatchBatches has no length unless steps is given")
        return self.steps

    def __getitem__(self, step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        scale = scale_for_step(self.seed, step, self.scales)
        rng = step_rng(self.seed, _PATCH_STREAM, step, self.rank)
        lr, hr = self.packed.sample(rng, scale, self.batch_size, self.augment)
        return scale, lr, hr
