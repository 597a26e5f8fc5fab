"""The training images packed into tensors, and random patches cut from them in one batched gather.

:class:`PackedImages` holds every HR image of a rank, and its bicubic LR image per scale, as
zero-padded ``uint8`` NHWC tensors, on the training device when they fit there (291 images of
up to 481x481 take about 290 MB with x2/x3/x4). A batch is then a single gather per resolution:
the patch positions, flips and rotations become one index tensor, so no Python code runs per
patch and a GPU is never starved by the host.

The random draws are the same numpy draws, in the same order, as one would make for a per-patch
loop (image, row, column, flip, rotation), so a batch depends only on its generator.
"""

from __future__ import annotations

import numpy as np
import torch

#: Largest share of the free GPU memory the packed images may take (the rest is the model's).
GPU_SHARE = 0.25


def storage_device(nbytes: int, device: torch.device) -> torch.device:
    """Where to keep ``nbytes`` of training pixels for training on ``device``: there if it has room."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return device if nbytes <= GPU_SHARE * free else torch.device("cpu")
    return device  # CPU, or MPS (unified memory)


class PackedImages:
    """HR and per-scale LR images of one rank as padded ``(N, H, W, 3)`` uint8 tensors."""

    def __init__(self, hr: list[np.ndarray], lr: dict[int, list[np.ndarray]], patch_size: int,
                 eligible: dict[int, np.ndarray], device: torch.device | str = "cpu") -> None:
        self.patch_size = patch_size
        self.eligible = eligible
        want = torch.device(device)
        nbytes = _padded_bytes(hr) + sum(_padded_bytes(v) for v in lr.values())
        self.device = storage_device(nbytes, want)
        self.nbytes = nbytes
        self.hr = _pack(hr, self.device)
        self.lr = {s: _pack(v, self.device) for s, v in lr.items()}
        self.lr_sizes = {s: np.array([a.shape[:2] for a in v], dtype=np.int64) for s, v in lr.items()}

    def sample(
        self, rng: np.random.Generator, scale: int, count: int, augment: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` random aligned (LR, HR) patch pairs at ``scale``: uint8 NCHW tensors on :attr:`device`.

        Each pair is flipped horizontally and/or rotated by a multiple of 90 degrees (the same
        transform for LR and HR) when ``augment``.
        """
        p = self.patch_size
        pool = self.eligible[scale]
        picks = pool[rng.integers(len(pool), size=count)]
        sizes = self.lr_sizes[scale][picks]
        ys = rng.integers(0, sizes[:, 0] - p + 1)
        xs = rng.integers(0, sizes[:, 1] - p + 1)
        flips = rng.integers(0, 2, size=count)
        turns = rng.integers(0, 4, size=count)
        if not augment:
            flips, turns = np.zeros_like(flips), np.zeros_like(turns)
        idx = torch.from_numpy(picks).to(self.device)
        f = torch.from_numpy(flips.astype(bool)).to(self.device)
        k = torch.from_numpy(turns).to(self.device)
        lr = _gather(self.lr[scale], idx, torch.from_numpy(ys).to(self.device),
                     torch.from_numpy(xs).to(self.device), p, f, k)  # fmt: skip
        # LR pixel (y, x) covers HR pixels [y*s, (y+1)*s): the patches stay aligned.
        hr = _gather(self.hr, idx, torch.from_numpy(ys * scale).to(self.device),
                     torch.from_numpy(xs * scale).to(self.device), p * scale, f, k)  # fmt: skip
        return lr, hr


def _padded_bytes(images: list[np.ndarray]) -> int:
    h = max(a.shape[0] for a in images)
    w = max(a.shape[1] for a in images)
    return len(images) * h * w * 3


def _pack(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    h = max(a.shape[0] for a in images)
    w = max(a.shape[1] for a in images)
    out = torch.zeros((len(images), h, w, 3), dtype=torch.uint8)
    for i, a in enumerate(images):
        out[i, : a.shape[0], : a.shape[1]] = torch.from_numpy(np.ascontiguousarray(a))
    return out.to(device)


def _gather(stack: torch.Tensor, idx: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, n: int,
            flips: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Patches of side ``n`` at (ys, xs) of images ``idx`` of an (N, H, W, 3) stack, as (B, 3, n, n).

    Each patch becomes ``rot90(fliplr(crop) if flip else crop, turns)`` (counter-clockwise, as
    ``np.rot90``). A flip or rotation of a square only reverses and/or swaps its axes: rotation
    k reverses the rows for k = 2, 3 and the columns for k = 1, 2 (a flip toggles that), and
    swaps the axes for odd k. So one broadcast gather with per-patch row and column index
    vectors cuts and reverses every patch at once, and the odd ones are transposed after.
    """
    a = torch.arange(n, device=stack.device)
    rev_rows = turns >= 2
    rev_cols = ((turns == 1) | (turns == 2)) ^ flips
    rows = torch.where(rev_rows[:, None], n - 1 - a, a) + ys[:, None]  # (B, n)
    cols = torch.where(rev_cols[:, None], n - 1 - a, a) + xs[:, None]
    patches = stack[idx[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, n, n, 3): one gather
    odd = (turns % 2 == 1).nonzero().flatten()
    if len(odd):
        patches[odd] = patches[odd].transpose(1, 2)
    return patches.permute(0, 3, 1, 2).contiguous()
